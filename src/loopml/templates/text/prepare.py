"""Prepare stage: write the support-ticket example as data/raw/tickets.parquet (`text`, `label`).

The messages are generated (loopml.examples.tickets: no download), deterministic, and made so that a
keyword rule is not enough. Replace this with your own export: any CSV or Parquet table with a text
column and a label column (set data.path, data.target and data.columns in loopml.yaml).
"""

from pathlib import Path

from loopml.examples import tickets

frame = tickets(2000)
out = Path("data/raw/tickets.parquet")
out.parent.mkdir(parents=True, exist_ok=True)
frame.to_parquet(out, index=False)
print(f"wrote {out}: {len(frame)} messages, labels {sorted(frame['label'].unique())}")
