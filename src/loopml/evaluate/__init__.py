"""Evaluation: metrics, gates (thresholds and champion comparison), the HTML report."""
