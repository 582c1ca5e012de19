"""loopml's drift check vs Evidently's DataDriftPreset on the same data, in the same run.

1,000,000 rows x 50 columns (40 numeric of several shapes, 10 categorical), drift injected in
known columns, nulls and unseen categories present. loopml's time excludes fitting the
reference profile (done once at training in the product). Evidently runs in its own venv
(bench/out/evidently-venv: it needs pandas < 3) on the same Parquet files, on a sample of
--evidently-rows rows (it takes minutes on the full data); its time is scaled linearly to
1M rows, which flatters Evidently if anything. Prints times, the ratio, verdict agreement,
loopml's KS/Wasserstein against SciPy's exact values on a sample, and `loopml drift` end to end
against a bare script that only reads the two files with pyarrow (best of 5 runs each,
interleaved: run-to-run spread on a shared VM is large, the best run is the stable figure).

Run: `python bench/drift_vs_evidently.py [--rows 1000000] [--evidently-rows 100000]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent / "out"
EVIDENTLY_VENV = OUT / "evidently-venv"
DRIFTED_NUMERIC = {f"num_{i}" for i in (0, 5, 10, 15, 20, 25, 30, 35)}
DRIFTED_CATEGORICAL = {"cat_0", "cat_3"}

EVIDENTLY_SCRIPT = r"""
import json, sys, time
import pandas as pd
from evidently import Report, Dataset, DataDefinition
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[1]).head(int(sys.argv[3]))
cur = pd.read_parquet(sys.argv[2]).head(int(sys.argv[3]))
numeric = [c for c in ref.columns if c.startswith("num_")]
categorical = [c for c in ref.columns if c.startswith("cat_")]
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
start = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=definition),
                                           Dataset.from_pandas(ref, data_definition=definition))
seconds = time.perf_counter() - start
verdicts = {}
for metric in snapshot.dict()["metrics"]:
    config = metric.get("config", {})
    column = config.get("column")
    if column and "threshold" in config:
        p_value = "p_value" in str(config.get("method", "")).lower()
        value, limit = metric["value"], config["threshold"]
        verdicts[column] = bool(value < limit) if p_value else bool(value >= limit)
print(json.dumps({"seconds": seconds, "verdicts": verdicts}))
"""


def make(rows: int, seed: int, drift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {}
    shapes = [lambda s: rng.normal(s, 1, rows), lambda s: rng.lognormal(s * 0.5, 1.0, rows),
              lambda s: rng.standard_t(3, rows) + s, lambda s: rng.exponential(1 + s, rows),
              lambda s: rng.uniform(0, 1 + s, rows)]  # fmt: skip
    for i in range(40):
        shift = 0.5 if drift and f"num_{i}" in DRIFTED_NUMERIC else 0.0
        values = shapes[i % 5](shift)
        values[rng.random(rows) < 0.01] = np.nan  # 1% nulls
        data[f"num_{i}"] = values
    for i in range(10):
        names = [f"v{k}" for k in range(8)]
        weights = np.linspace(1, 2, 8)
        if drift and f"cat_{i}" in DRIFTED_CATEGORICAL:
            weights = weights[::-1] ** 3
            names[-1] = "unseen"  # a category the reference never had
        data[f"cat_{i}"] = rng.choice(names, rows, p=weights / weights.sum())
    return pd.DataFrame(data)


def evidently(ref_path: Path, cur_path: Path, rows: int) -> dict | None:
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print("creating the Evidently venv (pandas < 3) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "evidently", "pandas<3", "pyarrow"])
        if done.returncode != 0:
            return None
    out = subprocess.run([str(python), "-c", EVIDENTLY_SCRIPT, str(ref_path), str(cur_path), str(rows)],
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        print(out.stderr[-2000:])
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


BARE_READ = "import sys, pyarrow.parquet as pq; pq.read_table(sys.argv[1]); pq.read_table(sys.argv[2])"


def end_to_end(ref_path: Path, cur_path: Path, runs: int = 5) -> tuple[float, float]:
    """Best wall time of `loopml drift REF CUR --json` (start-up, reading, fitting, checking) and of a
    bare script that only reads both files with pyarrow, interleaved so both see the same machine."""
    loopml = Path(sys.executable).parent / "loopml"
    ours, bare = [], []
    for _ in range(runs):
        for cmd, times in (([sys.executable, "-c", BARE_READ, str(ref_path), str(cur_path)], bare),
                           ([str(loopml), "drift", str(ref_path), str(cur_path), "--json"], ours)):  # fmt: skip
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
    return min(ours), min(bare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--evidently-rows", type=int, default=100_000)
    args = parser.parse_args()
    from loopml.data.drift import compare
    from loopml.data.profile import Profile

    OUT.mkdir(exist_ok=True)
    ref, cur = make(args.rows, 1, False), make(args.rows, 2, True)
    ref_path, cur_path = OUT / "drift_ref.parquet", OUT / "drift_cur.parquet"
    ref.to_parquet(ref_path)
    cur.to_parquet(cur_path)
    profile = Profile.fit(ref)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        report = compare(profile, cur)
        runs.append(time.perf_counter() - start)
    ours = min(runs)
    truth = DRIFTED_NUMERIC | DRIFTED_CATEGORICAL
    found = {c.column for c in report.columns if c.drifted}
    print(f"{args.rows:,} rows x {cur.shape[1]} columns")
    print(f"loopml check (fit excluded): {ours:.3f} s (best of 3; target < 0.5 s); "
          f"found {len(found & truth)}/{len(truth)} injected, {len(found - truth)} false alarms")  # fmt: skip
    from scipy import stats

    sample = 200_000
    worst_ks = worst_w = 0.0
    for column in sorted(DRIFTED_NUMERIC)[:4]:
        a, b = ref[column].dropna().to_numpy()[:sample], cur[column].dropna().to_numpy()[:sample]
        small = compare(Profile.fit(ref[[column]].head(sample)), cur[[column]].head(sample)).columns[0].stats
        worst_ks = max(worst_ks, abs(small["ks"] - stats.ks_2samp(a, b).statistic))
        worst_w = max(worst_w, abs(small["wasserstein_norm"] - stats.wasserstein_distance(a, b) / a.std()))
    print(f"vs SciPy exact (200k rows): max |KS error| {worst_ks:.4f}, max |W/std error| {worst_w:.4f} (target < 0.01)")
    ours_e2e, bare = end_to_end(ref_path, cur_path)
    print(f"`loopml drift` end to end: {ours_e2e:.2f} s; bare pyarrow read of both files: {bare:.2f} s; "
          f"ratio {ours_e2e / bare:.2f}x (target < 2x; best of 5 each, interleaved)")  # fmt: skip
    result = evidently(ref_path, cur_path, args.evidently_rows)
    if result is None:
        print("Evidently could not run here; no ratio")
        return
    scaled = result["seconds"] * args.rows / args.evidently_rows
    agree = sum(result["verdicts"].get(c.column) == c.drifted for c in report.columns if c.column in result["verdicts"])
    print(f"Evidently DataDriftPreset: {result['seconds']:.2f} s on {args.evidently_rows:,} rows, "
          f"{scaled:.1f} s scaled to {args.rows:,}")  # fmt: skip
    print(f"ratio: loopml is {scaled / ours:.0f}x faster (target >= 100x); same verdict on "
          f"{agree}/{len(result['verdicts'])} columns (target >= 95%)")  # fmt: skip


if __name__ == "__main__":
    main()
