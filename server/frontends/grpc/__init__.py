"""The gRPC frontend: ``latentserve.v1.GenerativeService`` over the engine."""
