"""Batched inference server: ONNX Runtime behind REST and gRPC; imports no torch."""
