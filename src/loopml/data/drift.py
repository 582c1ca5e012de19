"""Drift of current data against a reference profile: vectorized NumPy over fixed cells.

Per numeric column: PSI over the reference deciles (smoothed), KS distance (binned CDFs on
the reference quantile grid; within 1/NUMERIC_CELLS of the exact value) with its p-value from
`scipy.stats.kstwo`, Benjamini–Hochberg corrected across columns, Wasserstein-1 (piecewise-
linear CDFs inside cells, exact beyond the grid) normalized by the reference std, and
Jensen–Shannon distance. Per categorical column: PSI, Jensen–Shannon, L∞ and chi². Both:
change in null share, share of out-of-range or unseen values. Verdicts use effect sizes
(PSI, normalized Wasserstein / Jensen–Shannon), never the p-value alone: at large n every
tiny difference is "significant".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from loopml.config import DriftThresholds
from loopml.data.profile import ColumnProfile, Profile

EPS = 1e-4  # smoothing for empty cells in PSI
# Column levels: ok, warn, drift; and two findings that are drift whatever the statistics say:
# the column is missing from the current data, or holds another type there.
LEVELS = ("ok", "warn", "drift", "missing", "type_mismatch")


@dataclass
class ColumnDrift:
    column: str
    kind: str
    stats: dict[str, float | None]
    level: str  # see LEVELS
    drifted: bool
    note: str = ""


@dataclass
class DriftReport:
    columns: list[ColumnDrift]
    drift_share: float
    dataset_drift: bool
    rows_reference: int
    rows_current: int
    thresholds: dict[str, float] = field(default_factory=dict)
    enough_rows: bool = True  # False: fewer current rows than thresholds.min_rows, no verdict given
    skipped: dict[str, str] = field(default_factory=dict)  # columns not compared, and why

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(reference: Profile, current: Any, thresholds: DriftThresholds | None = None) -> DriftReport:
    """Drift of `current` (a Profile counted on the reference's grid, a pandas DataFrame or a pyarrow
    Table) against `reference`. Below `thresholds.min_rows` current rows the statistics are there but
    nothing is called drift."""
    thresholds = thresholds or DriftThresholds()
    counted = current if isinstance(current, Profile) else reference.count(current)
    results = []
    for name, ref in reference.columns.items():
        cur = counted.columns[name]
        stats = _numeric(ref, cur) if ref.kind == "numeric" else _categorical(ref, cur)
        stats["null_share_change"] = _share(cur.nulls, cur.rows) - _share(ref.nulls, ref.rows)
        results.append(ColumnDrift(name, ref.kind, stats, "ok", False))
    _benjamini_hochberg(results)
    rows_ref = next(iter(reference.columns.values())).rows if reference.columns else 0
    rows_cur = next(iter(counted.columns.values())).rows if counted.columns else 0
    enough = rows_cur >= thresholds.min_rows
    for result in results:
        cur = counted.columns[result.column]
        if cur.absent:
            result.level, result.drifted, result.note = "missing", True, "the current data lacks this column"
        elif cur.mismatch:
            result.level, result.drifted = "type_mismatch", True
            result.note = f"{result.kind} in the reference, {cur.mismatch} in the current data"
        elif enough:
            result.level, result.drifted = _verdict(result, thresholds)
    drifted = sum(r.drifted for r in results)
    share = drifted / len(results) if results else 0.0
    return DriftReport(results, share, bool(results) and share >= thresholds.drift_share, rows_ref, rows_cur,
                       thresholds.model_dump(), enough, dict(reference.skipped))  # fmt: skip


def _numeric(ref: ColumnProfile, cur: ColumnProfile) -> dict[str, float | None]:
    n_ref, n_cur = ref.present, cur.present
    names = ("psi", "ks", "ks_pvalue", "wasserstein", "wasserstein_norm", "jensen_shannon", "out_of_range_share")
    stats: dict[str, float | None] = {**dict.fromkeys(names), "mean_ref": ref.mean, "mean_cur": cur.mean}
    if n_ref == 0 or n_cur == 0:
        return stats  # empty or all-null on one side: nothing to compare but the null share
    p, q = ref.counts / n_ref, cur.counts / n_cur
    stats["out_of_range_share"] = float(q[0] + q[-1])
    # deciles of the reference: cells between the edges nearest to levels 0.1 ... 0.9; under- and
    # overflow fold into the first and last decile
    cuts = np.concatenate([[0], ref.decile_starts()[1:], [len(p)]])
    decile_p, decile_q = (np.diff(np.concatenate([[0.0], np.cumsum(shares)])[cuts]) for shares in (p, q))
    stats["psi"] = _psi(decile_p, decile_q)
    cdf_p, cdf_q = np.cumsum(p), np.cumsum(q)  # at each edge (after under, after each cell)
    ks = float(np.max(np.abs(cdf_p - cdf_q)))
    stats["ks"] = ks
    effective = n_ref * n_cur / (n_ref + n_cur)
    stats["ks_pvalue"] = _ks_pvalue(ks, effective)
    stats["wasserstein"] = _wasserstein(ref, cur, cdf_p, cdf_q, n_cur)
    std = ref.std
    if std > 0:
        stats["wasserstein_norm"] = stats["wasserstein"] / std
    else:  # a constant reference: any movement at all is drift
        stats["wasserstein_norm"] = 0.0 if stats["wasserstein"] == 0 else float("inf")
    stats["jensen_shannon"] = _jensen_shannon(p, q)
    return stats


def _ks_pvalue(ks: float, n: float) -> float:
    """scipy.stats.kstwo for small samples; past 10,000 its large-n limit, the Kolmogorov
    distribution (kstwobign), where the two agree to ~1e-3. The limit is two short series in
    NumPy (equal to SciPy's to 1e-14): importing scipy.stats alone costs a second."""
    if n <= 10_000:
        from scipy.stats import kstwo

        return float(kstwo.sf(ks, max(1, round(n))))
    lam = ks * np.sqrt(n)
    if lam <= 0:
        return 1.0
    if lam < 1.0:  # Jacobi's form converges fast for small lambda
        k = np.arange(1, 21)
        cdf = np.sqrt(2 * np.pi) / lam * np.exp(-((2 * k - 1) ** 2) * np.pi**2 / (8 * lam**2)).sum()
        return float(1.0 - cdf)
    k = np.arange(1, 101)
    return float(2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * k**2 * lam**2)))


def _wasserstein(ref: ColumnProfile, cur: ColumnProfile, cdf_p: np.ndarray, cdf_q: np.ndarray, n_cur: int) -> float:
    """∫|F_ref - F_cur| dx with both CDFs linear inside each grid cell, plus the exact tails."""
    edges = ref.edges
    widths = np.diff(edges)
    d0, d1 = cdf_p[:-2] - cdf_q[:-2], cdf_p[1:-1] - cdf_q[1:-1]  # differences at each cell's two edges
    same = d0 * d1 >= 0
    a, b = np.abs(d0), np.abs(d1)
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = np.where(a + b > 0, (a**2 + b**2) / (2 * (a + b)), 0.0)
    inner = float(np.sum(widths * np.where(same, (a + b) / 2, crossing)))
    # beyond the grid: the reference has no mass there, so |F_ref - F_cur| is the current's own tail
    tails = cur.beyond_low / n_cur + cur.beyond_high / n_cur
    tails += ref.beyond_low / ref.present + ref.beyond_high / ref.present  # zero for the reference itself
    return inner + tails


def _categorical(ref: ColumnProfile, cur: ColumnProfile) -> dict[str, float | None]:
    n_ref, n_cur = ref.present, cur.present
    stats: dict[str, float | None] = {"psi": None, "jensen_shannon": None, "linf": None, "chi2": None,
                                      "chi2_pvalue": None, "unseen_share": None}  # fmt: skip
    if n_ref == 0 or n_cur == 0:
        return stats
    p, q = ref.counts / n_ref, cur.counts / n_cur  # last cell: unseen (zero in the reference)
    stats["psi"] = _psi(p, q)
    stats["jensen_shannon"] = _jensen_shannon(p, q)
    stats["linf"] = float(np.max(np.abs(p - q)))
    stats["unseen_share"] = float(q[-1])
    expected = (p[:-1] + EPS) / (p[:-1] + EPS).sum() * n_cur
    observed = cur.counts[:-1] * (n_cur / max(cur.counts[:-1].sum(), 1))
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    stats["chi2"] = statistic
    stats["chi2_pvalue"] = _chi2_sf(max(len(expected) - 1, 1), statistic)
    return stats


def _chi2_sf(dof: int, x: float) -> float:
    """P(χ²_dof ≥ x): the regularized upper incomplete gamma Q(dof/2, x/2), by its series below
    a + 1 and its continued fraction (modified Lentz) above, as in Numerical Recipes §6.2. Equal
    to scipy.special.chdtrc to ~1e-13; written here because importing scipy.special costs
    0.15 s, more than the whole drift check."""
    a, x = dof / 2.0, x / 2.0
    if x <= 0:
        return 1.0
    scale = math.exp(-x + a * math.log(x) - math.lgamma(a))
    if x < a + 1:  # series for the lower part P(a, x)
        term = total = 1.0 / a
        shape = a
        while abs(term) > abs(total) * 1e-16:
            shape += 1
            term *= x / shape
            total += term
        return max(0.0, 1.0 - total * scale)
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    fraction = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        fraction *= step
        if abs(step - 1) < 1e-16:
            break
    return fraction * scale


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p + EPS, q + EPS
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]), like scipy.spatial.distance.jensenshannon."""
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(np.sqrt(max((kl_p + kl_q) / 2, 0.0)))


def _benjamini_hochberg(results: list[ColumnDrift]) -> None:
    keyed = [(r, "ks_pvalue" if r.kind == "numeric" else "chi2_pvalue") for r in results]
    tested = [(r, key) for r, key in keyed if r.stats.get(key) is not None]
    if not tested:
        return
    pvalues = np.array([r.stats[key] for r, key in tested])
    order = np.argsort(pvalues)
    ranked = pvalues[order] * len(pvalues) / np.arange(1, len(pvalues) + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    for (result, key), value in zip([tested[i] for i in order], adjusted, strict=True):
        result.stats[key.replace("pvalue", "pvalue_bh")] = float(value)


def _verdict(result: ColumnDrift, t: DriftThresholds) -> tuple[str, bool]:
    s = result.stats
    psi = s.get("psi") or 0.0
    effect = s.get("wasserstein_norm") if result.kind == "numeric" else s.get("jensen_shannon")
    effect_limit = t.wasserstein if result.kind == "numeric" else t.jensen_shannon
    if psi >= t.psi_alert or (effect is not None and effect >= effect_limit):
        return "drift", True
    if psi >= t.psi_warn:
        return "warn", False
    return "ok", False


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
