"""Compression under the gates: variants of a trained model (ONNX Runtime, int8, pruning, low-rank),
judged like the original, the best one that passes registered and served."""
