"""The Open Inference Protocol (KServe V2) over the engine: REST ``/v2/...`` and gRPC
``inference.GRPCInferenceService``."""
