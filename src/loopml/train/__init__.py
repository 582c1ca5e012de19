"""Training: device and precision choice, the PyTorch loop, estimators, the packaged model."""
