"""gRPC contract `latentserve.v1`: generated stubs (regenerate with `make proto`)."""
