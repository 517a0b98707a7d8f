"""What guards the transports — bearer tokens, admin tokens, TLS, HTTP and gRPC limits,
CORS — wrapped around the frontends by the composition root. It knows no models."""
