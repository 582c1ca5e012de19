"""Monitoring: drift reports over live or ad hoc data (the inference log and the retraining loop build on it)."""
