"""Generated stubs of the Open Inference Protocol (KServe V2) gRPC service (``make proto``)."""
