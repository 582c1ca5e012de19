"""The self-contained HTML optimize report: the Pareto table and a latency-vs-quality plot."""

from __future__ import annotations

from importlib import resources

from loopml import metric
from loopml.contracts import OptimizeResult
from loopml.evaluate.report import png_base64, pyplot


def render(result: OptimizeResult, task: str) -> str:
    import jinja2

    primary = metric.PRIMARY[task]
    plot = _plot(result, primary) if any(v.metrics for v in result.variants) else None
    template = resources.files("loopml.optimize").joinpath("report.html.j2").read_text()
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(result=result, primary=primary, plot=plot)


def _plot(result: OptimizeResult, primary: str) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = {"chosen": "#137333", "passed": "#1a73e8", "rejected": "#b3261e"}
    for i, v in enumerate(v for v in result.variants if v.metrics):
        x, y = v.metrics["row_p95_ms"], v.metrics[primary]
        ax.scatter([x], [y], s=70 if v.status == "chosen" else 40, color=colors.get(v.status, "#5c6473"),
                   marker="*" if v.status == "chosen" else "o", zorder=3)  # fmt: skip
        # labels alternate above and below their point, so neighbours at one accuracy stay legible
        ax.annotate(v.name, (x, y), textcoords="offset points", xytext=(6, 5 if i % 2 == 0 else -12), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"p95 latency of one row (ms, {result.threads} thread(s), log scale)")
    ax.set_ylabel(f"{primary} on the test rows")
    ax.grid(alpha=0.3)
    return png_base64(fig)
