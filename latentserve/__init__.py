"""latentserve: training, export and batched serving of deep generative image models."""

__version__ = "0.1.0"
