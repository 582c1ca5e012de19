"""The register stage: a model that passed the gates becomes a registered version; the gates decide
which aliases it takes. Registering the same run twice reuses its version (idempotent), and a model
that failed is never registered, not even in part."""

from __future__ import annotations

import json
import time

from loopml.contracts import EvaluateResult, OptimizeResult, RegisterResult, Tag, TrainResult, plain
from loopml.errors import GateFailed
from loopml.project import Project
from loopml.uri import CHALLENGER, CHAMPION


def register(project: Project, as_challenger: bool = False) -> RegisterResult:
    """Register the evaluated model if it passed the threshold and baseline gates: alias `challenger`,
    plus `champion` when it also beat the champion, unless `as_challenger` (what the loop asks: live
    traffic in a canary, not the test set alone, then decides on champion). A failing model stays a
    logged run and raises `GateFailed`."""
    from loopml.registry import Registry

    started = time.perf_counter()
    trained = project.require_result(TrainResult, "register")
    evaluated = project.require_result(EvaluateResult, "register")
    registry = Registry.of(project)
    if not evaluated.registrable:
        with registry.run(run_id=trained.run_id):
            registry.set_tags({Tag.REGISTERED: False})
        lines = [f"{g.metric} {g.rule} ({g.kind}): got {'n/a' if g.value is None else format(g.value, '.4g')} "
                 f"{g.note}".rstrip() for g in evaluated.failed if g.kind != "vs_champion"]  # fmt: skip
        raise GateFailed(
            f"the model failed {len(lines)} gate(s); it is logged as run {trained.run_id} but not registered:\n  "
            + "\n  ".join(lines)
            + f"\nSee {evaluated.report}; improve the model or revisit the gates in loopml.yaml."
        )
    model_uri, metrics, variant_tags = trained.model_uri, evaluated.metrics, {Tag.VARIANT: "base"}
    optimized = project.read_result(OptimizeResult)
    if optimized is not None and optimized.run_id == trained.run_id and optimized.choice is not None \
            and optimized.chosen != "base":  # fmt: skip
        # the variant optimize chose: judged on the same rows by the same gates, so its figures stand
        choice = optimized.choice
        model_uri = optimized.model_uri
        metrics = {k: v for k, v in choice.metrics.items() if k in evaluated.metrics}
        variant_tags = {Tag.VARIANT: choice.name, Tag.RUNTIME: choice.runtime,
                        Tag.AGREEMENT: round(choice.agreement or 0.0, 6)}  # fmt: skip
        if "opset" in choice.details:
            variant_tags[Tag.OPSET] = choice.details["opset"]
            variant_tags["loopml.onnxruntime_version"] = _version_of("onnxruntime")
    tags = {
        Tag.DATA_DIGEST: trained.data_digest,
        Tag.GIT_COMMIT: trained.git_commit,
        Tag.DEVICE: trained.device,
        **variant_tags,
        Tag.GATES: json.dumps(plain(evaluated.gates)),
        **{f"{Tag.METRIC}{k}": round(v, 6) for k, v in metrics.items()},
    }
    make_champion = evaluated.becomes_champion
    if not make_champion:
        reason = "passed the gates; did not beat the champion"
    elif evaluated.champion is None:
        reason = "passed the gates, first champion"
    else:
        reason = "passed the gates and beat the champion"
    if make_champion and as_challenger and evaluated.champion is not None:
        make_champion, reason = False, "passed the gates; challenger until its canary is judged"
    aliases = [CHALLENGER, CHAMPION] if make_champion else [CHALLENGER]
    version, reused = registry.register(trained.run_id, model_uri, tags, aliases, reason)
    with registry.run(run_id=trained.run_id):
        registry.set_tags({Tag.REGISTERED: True, Tag.VERSION: version.version})
    result = RegisterResult(
        seconds=round(time.perf_counter() - started, 3),
        figure=f"{project.config.name} v{version.version} @ {', '.join(version.aliases)}"
        + (" (reused)" if reused else ""),
        version=version.version,
        aliases=version.aliases,
        champion=CHAMPION in version.aliases,
        reused=reused,
    )
    project.write_result(result)
    return result


def _version_of(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
