"""Python SDK (REST and gRPC) and the client-side CLI."""
