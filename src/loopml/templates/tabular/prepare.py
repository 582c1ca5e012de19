"""Prepare stage: write scikit-learn's bundled breast-cancer set as data/raw/breast_cancer.parquet.

Replace this with your own data export; loopml only needs a Parquet or CSV table.
"""

from pathlib import Path

from sklearn.datasets import load_breast_cancer

bunch = load_breast_cancer(as_frame=True)
frame = bunch.data.copy()
frame.columns = [c.replace(" ", "_") for c in frame.columns]
frame["diagnosis"] = bunch.target.map(dict(enumerate(bunch.target_names))).astype(str)
out = Path("data/raw/breast_cancer.parquet")
out.parent.mkdir(parents=True, exist_ok=True)
frame.to_parquet(out, index=False)
print(f"wrote {out}: {len(frame)} rows, {frame.shape[1]} columns")
