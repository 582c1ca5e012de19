"""Prepare stage: write scikit-learn's bundled 8x8 digits as data/raw/digits.parquet.

Replace this with your own data export; loopml only needs a Parquet or CSV table.
"""

from pathlib import Path

from sklearn.datasets import load_digits

digits = load_digits(as_frame=True)
frame = digits.data.copy()
frame.columns = [f"pixel_{i}" for i in range(frame.shape[1])]
frame["label"] = digits.target.astype("int64")
out = Path("data/raw/digits.parquet")
out.parent.mkdir(parents=True, exist_ok=True)
frame.to_parquet(out, index=False)
print(f"wrote {out}: {len(frame)} rows, {frame.shape[1]} columns")
