"""Checkpoint → TorchScript and ONNX graphs in a versioned model repository."""
