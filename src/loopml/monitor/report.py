"""The drift report: one self-contained HTML page, columns sorted by severity, each with its
reference-vs-current distribution drawn from the profiles' cells."""

from __future__ import annotations

from importlib import resources

import numpy as np

from loopml.data.drift import DriftReport
from loopml.data.profile import ColumnProfile, Profile
from loopml.evaluate.report import png_base64, pyplot

MAX_PLOTS = 24  # the most severe columns get a plot; a 500-column report stays small


def render(report: DriftReport, reference: Profile, current: Profile, title: str,
           facts: dict[str, str] | None = None) -> str:  # fmt: skip
    """The page; `facts` (label → text) is shown as a table above the verdict (live performance, ...)."""
    import jinja2

    ordered = sorted(report.columns, key=_severity, reverse=True)
    plots = {c.column: _plot(reference.columns[c.column], current.columns[c.column]) for c in ordered[:MAX_PLOTS]
             if c.level not in ("missing", "type_mismatch")}  # fmt: skip
    template = resources.files("loopml.monitor").joinpath("drift.html.j2").read_text()
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(title=title, report=report, columns=ordered, plots=plots,
                                            drifted=sum(c.drifted for c in report.columns),
                                            facts=facts or {})  # fmt: skip


def _severity(column) -> tuple:
    rank = {"missing": 3, "type_mismatch": 3, "drift": 2, "warn": 1, "ok": 0}[column.level]
    return rank, column.stats.get("psi") or 0.0


def _plot(ref: ColumnProfile, cur: ColumnProfile) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 2.6))
    if ref.kind == "numeric":
        labels, p, q = _deciles(ref, cur)
    else:
        labels = [str(c) for c in ref.categories] + ["unseen"]
        p = ref.counts / max(ref.present, 1)
        q = cur.counts / max(cur.present, 1)
        if len(labels) > 16:  # the largest categories by either side, the rest folded into "other"
            top = np.argsort(-(p + q))[:15]
            labels = [labels[i] for i in top] + ["other"]
            p = np.append(p[top], 1 - p[top].sum())
            q = np.append(q[top], 1 - q[top].sum())
    x = np.arange(len(labels))
    ax.bar(x - 0.2, p, width=0.4, label="reference", color="#8ab4f8")
    ax.bar(x + 0.2, q, width=0.4, label="current", color="#f28b82")
    ax.set_xticks(x, labels=labels, rotation=45 if len(labels) > 6 else 0, fontsize=7, ha="right")
    ax.set_ylabel("share")
    ax.legend(fontsize=7)
    return png_base64(fig)


def _deciles(ref: ColumnProfile, cur: ColumnProfile):
    """Shares of both sides in the reference's deciles (under/overflow shown on their own)."""
    bounds = ref.decile_starts()
    p = ref.counts / max(ref.present, 1)
    q = cur.counts / max(cur.present, 1)
    inner_p, inner_q = np.add.reduceat(p[1:-1], bounds - 1), np.add.reduceat(q[1:-1], bounds - 1)
    labels = ["below"] + [f"D{i + 1}" for i in range(len(inner_p))] + ["above"]
    return labels, np.concatenate([[p[0]], inner_p, [p[-1]]]), np.concatenate([[q[0]], inner_q, [q[-1]]])
