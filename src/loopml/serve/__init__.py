"""Serving: the ASGI app, protocol adapters (Open Inference Protocol V2, MLflow scoring),
model runtimes, the dynamic batcher, canary routing, hot reload and Prometheus metrics."""
