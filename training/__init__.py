"""Training of the latent-model families; writes safetensors checkpoints."""
