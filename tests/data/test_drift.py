"""Reference profiles and the drift detector, against SciPy's exact statistics."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from loopml.data.drift import compare
from loopml.data.profile import Profile
from tests.conftest import loopml

N = 50_000
SHAPES = {
    "normal": lambda rng, shift: rng.normal(0.3 * shift, 1 + 0.2 * shift, N),
    "lognormal": lambda rng, shift: rng.lognormal(0.2 * shift, 1.5, N),
    "student_t3": lambda rng, shift: rng.standard_t(3, N) + 0.2 * shift,
    "exponential": lambda rng, shift: rng.exponential(1 + 0.3 * shift, N),
    "uniform": lambda rng, shift: rng.uniform(0, 1 + 0.1 * shift, N),
}


def frame(seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {name: make(rng, shift) for name, make in SHAPES.items()}
    weights = [0.4, 0.3, 0.2, 0.1] if not shift else [0.25, 0.25, 0.25, 0.25]
    data["color"] = rng.choice(["red", "green", "blue", "grey"], N, p=weights)
    return pd.DataFrame(data)


@pytest.mark.parametrize("seed", [1, 2])
def test_ks_and_wasserstein_match_scipy(seed):
    ref, cur = frame(seed, 0), frame(seed + 100, 1)
    report = compare(Profile.fit(ref), cur)
    for column in report.columns:
        if column.kind != "numeric":
            continue
        exact_ks = stats.ks_2samp(ref[column.column], cur[column.column]).statistic
        exact_w = stats.wasserstein_distance(ref[column.column], cur[column.column]) / ref[column.column].std()
        assert abs(column.stats["ks"] - exact_ks) < 0.01, column.column
        assert abs(column.stats["wasserstein_norm"] - exact_w) < 0.01, column.column


@pytest.mark.parametrize("n", [500, 20_000, 400_000])
def test_ks_pvalue_matches_scipy(n):
    """Exact kstwo for small samples, the Kolmogorov limit (kstwobign) past 10,000 rows."""
    from loopml.data.drift import _ks_pvalue

    for d in (0.001, 0.005, 0.01, 0.03, 0.1):
        exact = stats.kstwo.sf(d, n) if n <= 10_000 else stats.kstwobign.sf(d * np.sqrt(n))
        assert _ks_pvalue(d, n) == pytest.approx(exact, abs=1e-9), d


@pytest.mark.parametrize("dof", [1, 2, 3, 7, 20, 150, 1000, 20_000])
def test_chi2_pvalue_matches_scipy(dof):
    from scipy.special import chdtrc

    from loopml.data.drift import _chi2_sf

    for x in np.concatenate([[0.0, 1e-8, 0.5], np.linspace(0.1, 4, 40) * dof, [dof + 1, 50 * dof + 100, 2e6]]):
        exact = float(chdtrc(dof, x))
        assert _chi2_sf(dof, x) == pytest.approx(exact, rel=1e-9, abs=1e-300), x


def test_injected_drift_is_found_and_same_distribution_is_not():
    ref = frame(1, 0)
    drifted = compare(Profile.fit(ref), frame(2, 1))
    assert {c.column for c in drifted.columns if c.drifted} >= {"normal", "exponential", "color"}
    assert drifted.dataset_drift
    for seed in range(3, 8):  # repeated same-distribution draws: no false alarm
        same = compare(Profile.fit(ref), frame(seed, 0))
        assert not any(c.drifted for c in same.columns), [(c.column, c.stats) for c in same.columns if c.drifted]
        assert not same.dataset_drift


def test_categorical_statistics():
    ref = pd.DataFrame({"c": ["a"] * 600 + ["b"] * 400})
    cur = pd.DataFrame({"c": ["a"] * 300 + ["b"] * 500 + ["new"] * 200})
    stats_ = compare(Profile.fit(ref), cur).columns[0].stats
    assert stats_["unseen_share"] == pytest.approx(0.2)
    assert stats_["linf"] == pytest.approx(0.3)
    assert stats_["jensen_shannon"] == pytest.approx(jensenshannon([0.6, 0.4, 0.0], [0.3, 0.5, 0.2], base=2))


def test_nulls_constant_empty_and_few_values_without_warnings():
    ref = pd.DataFrame({"nulls": [np.nan] * 100, "constant": [5.0] * 100, "few": np.arange(100) % 3,
                        "x": np.linspace(0, 1, 100)})  # fmt: skip
    cur = pd.DataFrame({"nulls": [np.nan] * 50, "constant": [5.0] * 40 + [np.nan] * 10, "few": np.arange(50) % 4,
                        "x": np.linspace(0, 1, 50)})  # fmt: skip
    with np.errstate(all="raise"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            report = compare(Profile.fit(ref), cur)
            empty = compare(Profile.fit(ref), cur.iloc[:0])
    sparse = pd.DataFrame({"x": np.full(300_000, np.nan)})
    sparse.loc[np.arange(30) * 3000 + 1, "x"] = np.arange(30.0)  # 30 values the grid's every-3rd sample misses
    assert Profile.fit(sparse).columns["x"].present == 30
    by = {c.column: c for c in report.columns}
    assert by["few"].kind == "categorical" and by["few"].stats["unseen_share"] > 0
    assert by["constant"].stats["null_share_change"] == pytest.approx(0.2)
    assert not by["x"].drifted
    assert all(c.stats["null_share_change"] is not None for c in empty.columns)


def test_profiles_of_chunks_merge_into_the_profile_of_the_whole():
    ref = frame(1, 0)
    profile = Profile.fit(ref)
    whole = profile.count(ref)
    parts = profile.count(ref.iloc[:12_345]).merge(profile.count(ref.iloc[12_345:]))
    for name, column in whole.columns.items():
        assert (parts.columns[name].counts == column.counts).all()
        assert parts.columns[name].total == pytest.approx(column.total)
    assert Profile.from_dict(json.loads(json.dumps(whole.to_dict()))).columns["normal"].counts.tolist() == \
        whole.columns["normal"].counts.tolist()  # fmt: skip


def test_drift_command(tmp_path):
    frame(1, 0).to_parquet(tmp_path / "ref.parquet")
    frame(2, 1).to_csv(tmp_path / "cur.csv", index=False)
    out = json.loads(loopml("drift", "ref.parquet", "cur.csv", "--json", cwd=tmp_path).stdout)
    assert out["dataset_drift"] is True
    columns = {c["column"]: c for c in out["columns"]}
    assert {"psi", "ks", "wasserstein"} <= set(columns["normal"]["stats"])
    assert {"psi", "jensen_shannon"} <= set(columns["color"]["stats"]) and columns["color"]["drifted"]
    human = loopml("drift", "ref.parquet", "cur.csv", "--report", "drift.html", cwd=tmp_path).stdout
    assert "dataset drift" in human and "normal" in human
    html = (tmp_path / "drift.html").read_text()
    assert "Dataset drift" in html and html.count("data:image/png;base64,") == 6 and "<script" not in html
    missing = loopml("drift", "ref.parquet", "nope.parquet", cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_profile_pair_in_worker_processes_equals_one_process(tmp_path, monkeypatch):
    """Two local Parquet files are profiled by forked workers, each with its own columns (on 2+
    cores); the result is the one-process result, columns in the reference's order. A column the
    current file lacks counts as nulls; a worker's read error reaches the caller as a DataError."""
    from loopml.data import pair
    from loopml.data.io import read_arrow
    from loopml.errors import DataError

    ref, cur = frame(1, 0), frame(2, 1)
    cur = cur.drop(columns=["uniform"]).assign(extra=1.0)
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    order, shares = pair._shares(str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"))
    if len(shares) < 2:
        pytest.skip("one core: no worker processes")
    assert sorted(sum(shares, [])) == sorted(ref.columns) and order == list(ref.columns)
    profile, counted = pair.profile_pair(str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"))
    alone = Profile.fit(read_arrow(tmp_path / "ref.parquet"))
    assert list(profile.columns) == list(ref.columns)
    assert profile.to_dict() == alone.to_dict()
    assert counted.to_dict() == alone.count(read_arrow(tmp_path / "cur.parquet")).to_dict()
    assert counted.columns["uniform"].nulls == len(cur)
    (tmp_path / "bad.parquet").write_bytes((tmp_path / "cur.parquet").read_bytes()[:5000])
    with pytest.raises(DataError, match="bad.parquet"):
        pair.profile_pair(str(tmp_path / "ref.parquet"), str(tmp_path / "bad.parquet"))


@pytest.mark.parametrize("mass_at", ["top", "bottom", "middle"])
def test_point_masses_wider_than_a_decile(mass_at):
    """Images with 70% black pixels: the reference's deciles merge where its edges do, PSI still
    compares shares that sum to one (no same-data false alarm, a real shift found)."""
    rng = np.random.default_rng(0)
    spread = rng.uniform(0, 16, 3000)
    mass = {"top": 16.0, "bottom": 0.0, "middle": 8.0}[mass_at]
    ref = pd.DataFrame({"x": np.where(rng.random(3000) < 0.7, mass, spread)})
    profile = Profile.fit(ref)
    same = compare(profile, ref).columns[0].stats
    assert same["psi"] == pytest.approx(0.0, abs=1e-9) and same["ks"] == pytest.approx(0.0, abs=1e-9)
    shifted = compare(profile, pd.DataFrame({"x": rng.uniform(0, 16, 3000)})).columns[0]
    assert np.isfinite(shifted.stats["psi"]) and shifted.stats["psi"] > 0.25 and shifted.drifted


def test_lookup_table_equals_a_binary_search_per_bucket():
    from loopml.data.profile import LEVELS, _LookupTable

    rng = np.random.default_rng(0)
    grids = [np.sort(rng.normal(size=231)), np.sort(rng.lognormal(0, 3, 231)),
             np.quantile(rng.standard_t(3, 10**5), LEVELS),
             np.unique(np.round(rng.normal(size=500), 1)),  # repeated values merged into one edge
             np.array([5.0, 5.0 + 1e-12, 5.0 + 2e-12]),  # a span near float resolution: bucket starts repeat
             np.array([1e9, 1e9 + 1, 1e9 + 1000]), np.array([-1e300, 0.0, 1e300]),
             np.linspace(0, 1, (1 << 18) + 1)[::1000]]  # edges on bucket boundaries  # fmt: skip
    for edges in grids:
        table = _LookupTable(edges)
        starts = table.low + np.arange(table.BUCKETS + 1) / table.scale
        margin = 1e-6 / table.scale
        first = np.searchsorted(edges, starts[:-1] - margin, side="right")
        last = np.searchsorted(edges, starts[1:] + margin, side="right")
        assert np.array_equal(table.table[2:-1], np.where(first == last, first, table.pending)), edges[:3]


@pytest.mark.parametrize("source", ["pandas", "arrow"])
def test_counts_equal_a_binary_search_per_value(source):
    """Edges themselves, the top edge, values past both ends, NaN, ±inf and nulls, in several Arrow
    chunks: every value lands in the cell a binary search gives it, the sums are exact."""
    import pyarrow as pa

    rng = np.random.default_rng(3)
    profile = Profile.fit(pd.DataFrame({"x": rng.lognormal(0, 2, 30_000)}))
    edges = profile.columns["x"].edges
    values = np.concatenate([rng.lognormal(0.5, 2.5, 200_000), edges, edges[-1:] * 3, [-1.0, 0.0],
                             np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)])  # fmt: skip
    special = np.array([np.nan, np.inf, -np.inf, np.nan])
    values = np.concatenate([values, special])
    rng.shuffle(values)
    if source == "pandas":
        current = pd.DataFrame({"x": values})
    else:
        # NaN -> null, its value slot holding a number that must not be counted; the first chunk is a
        # slice, so its rows start mid-byte in the validity bitmap
        parts = np.array_split(np.concatenate([[7.0] * 5, values]), 7)
        chunks = [pa.array(np.where(np.isnan(part), edges[5], part), mask=np.isnan(part)) for part in parts]
        chunks[0] = chunks[0].slice(5)
        current = pa.table({"x": pa.chunked_array(chunks)})
    counted = profile.count(current).columns["x"]
    finite = values[np.isfinite(values)]
    cells = np.searchsorted(edges, finite, side="right")
    cells[finite == edges[-1]] = len(edges) - 1
    assert counted.counts.tolist() == np.bincount(cells, minlength=len(edges) + 1).tolist()
    assert counted.nulls == len(values) - len(finite) and counted.rows == len(values)
    assert counted.total == pytest.approx(finite.sum(), rel=1e-12)
    assert counted.total_sq == pytest.approx(np.dot(finite, finite), rel=1e-12)
    assert counted.beyond_low == pytest.approx((edges[0] - finite[finite < edges[0]]).sum(), rel=1e-12)
    assert counted.beyond_high == pytest.approx((finite[finite > edges[-1]] - edges[-1]).sum(), rel=1e-12)


def test_arrow_tables_profile_like_pandas_frames():
    import pyarrow as pa

    ref, cur = frame(1, 0), frame(2, 1)
    ref["level"] = np.arange(N) % 4  # few distinct numbers: categorical
    cur["level"] = np.arange(N) % 5
    ref.loc[::7, "normal"] = np.nan
    arrow = pa.Table.from_pandas(ref, preserve_index=False)
    arrow = arrow.set_column(arrow.schema.get_field_index("color"), "color", arrow["color"].dictionary_encode())
    from_pandas, from_arrow = Profile.fit(ref), Profile.fit(arrow)
    assert from_pandas.to_dict() == from_arrow.to_dict()
    assert from_pandas.count(cur).to_dict() == from_arrow.count(pa.Table.from_pandas(cur)).to_dict()


def test_drift_never_crashes_on_real_files(tmp_path):
    """Types that differ between the files, nested columns, duplicate headers, integers past 2^53, a
    missing column, too few rows: findings and notes, never a traceback."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = 2000
    ref = pa.table({"amount": rng.normal(size=n), "big": pa.array(rng.integers(2**60, 2**60 + 900, n)),
                    "tags": pa.array([[1, 2]] * n), "gone": rng.normal(size=n),
                    "when": pa.array(pd.date_range("2026-01-01", periods=n, freq="h"))})  # fmt: skip
    cur = pa.table({"amount": pa.array(["x"] * 500), "big": pa.array(rng.integers(2**60, 2**60 + 900, 500)),
                    "tags": pa.array([[3]] * 500),
                    "when": pa.array(pd.date_range("2026-03-01", periods=500, freq="h"))})  # fmt: skip
    pq.write_table(ref, tmp_path / "ref.parquet")
    pq.write_table(cur, tmp_path / "cur.parquet")
    proc = loopml("drift", "ref.parquet", "cur.parquet", "--json", cwd=tmp_path)
    out = json.loads(proc.stdout)
    columns = {c["column"]: c for c in out["columns"]}
    assert columns["amount"]["level"] == "type_mismatch" and columns["amount"]["drifted"]
    assert columns["gone"]["level"] == "missing" and columns["gone"]["drifted"]
    assert columns["when"]["kind"] == "numeric" and columns["when"]["drifted"]  # times compared as times
    assert "tags" in out["skipped"] and "nested" in out["skipped"]["tags"]
    assert columns["big"]["stats"]["psi"] is not None  # past 2^53: compared as float64 (rounded), no crash
    (tmp_path / "dup.csv").write_text("a,b,a\n1,2,3\n")
    dup = loopml("drift", "ref.parquet", "dup.csv", cwd=tmp_path, check=False)
    assert dup.returncode == 1 and "names ['a'] more than once" in dup.stderr and "Traceback" not in dup.stderr
    few = json.loads(loopml("drift", "ref.parquet", "ref.parquet", "--min-rows", "5000", "--json", cwd=tmp_path).stdout)
    assert few["enough_rows"] is False and not few["dataset_drift"]


def test_drift_checks_its_arguments_before_any_work(tmp_path):
    frame(1, 0).head(500).to_parquet(tmp_path / "ref.parquet")
    for args, words in ((["--psi-alert", "-1"], "--psi-alert: Input should be greater than 0"),
                        (["--drift-share", "5"], "--drift-share: Input should be less than or equal to 1"),
                        (["--report", "nowhere/drift.html"], "the folder nowhere does not exist"),
                        (["--report", "ref.parquet"], "never overwrites input data")):  # fmt: skip
        proc = loopml("drift", "ref.parquet", "ref.parquet", *args, cwd=tmp_path, check=False)
        assert proc.returncode == 1 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert pd.read_parquet(tmp_path / "ref.parquet").shape == (500, 6)


def test_a_wide_table_is_profiled_in_bounded_memory(tmp_path):
    """10,000 columns x 300 rows: no 512 KiB lookup table per column (the small-count path)."""
    import resource
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    wide = pd.DataFrame(rng.normal(size=(300, 10_000)), columns=[f"c{i}" for i in range(10_000)])
    wide.to_csv(tmp_path / "wide.csv", index=False)
    probe = ("import resource, sys; from loopml.data.pair import profile_pair; from loopml.data.drift import compare; "
             f"p, c = profile_pair('{tmp_path / 'wide.csv'}', '{tmp_path / 'wide.csv'}'); compare(p, c); "
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")  # fmt: skip
    peak_kb = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert peak_kb < 1024 * 1024, f"{peak_kb / 1024:.0f} MiB"
    del resource


def test_small_counts_equal_the_lookup_table():
    rng = np.random.default_rng(5)
    profile = Profile.fit(pd.DataFrame({"x": rng.lognormal(0, 2, 50_000)}))
    values = np.concatenate([rng.lognormal(0.3, 2, 1000), [np.nan, np.inf], profile.columns["x"].edges[:5]])
    small = profile.count(pd.DataFrame({"x": values})).columns["x"]
    large = profile.count(pd.DataFrame({"x": np.tile(values, 40)})).columns["x"]
    assert (large.counts == small.counts * 40).all() and large.nulls == small.nulls * 40
    assert large.total == pytest.approx(small.total * 40, rel=1e-9)
    assert large.beyond_high == pytest.approx(small.beyond_high * 40, rel=1e-9)
