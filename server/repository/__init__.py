"""The model repository on disk: versions and leases (``store``), hot reload, warm-up, and
the graph runtimes (ONNX Runtime / TorchScript sessions) a version is opened with."""
