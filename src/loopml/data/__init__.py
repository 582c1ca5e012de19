"""Data: reading tables, digests, schema inference and validation, the train/test split."""
