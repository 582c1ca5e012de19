"""`loopml monitor --watch`: the loop controller.

Each cycle reads the champion's recent traffic from the inference log. When its inputs drift
(dataset drift) or its live accuracy falls (policy in `loop:`), the controller:

1. writes the labelled recent traffic to `data/traffic/` and `dvc add`s it (a new DVC version
   of the retraining set: the raw data plus every labelled batch so far);
2. re-runs the pipeline (`dvc repro`); a model that passes the gates is registered as
   `challenger` (never straight to `champion`);
3. opens a canary on the running server and waits for labelled live traffic on both versions;
4. promotes the challenger (moves `champion`, reloads the server) or rejects it (closes the
   canary, tags the version), on live accuracy, 5xx share and p95 latency.

Every decision and its evidence is an MLflow run (tags `loopml.decision`, `loopml.evidence`),
a tag on the model version concerned, and a line in `reports/loop.log`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from loopml.config import parse_duration
from loopml.data.profile import PREDICTION_COLUMN
from loopml.monitor.check import LIVE_METRIC, VersionHealth, check
from loopml.monitor.server_client import ServerClient, ServerUnreachable, VersionTraffic
from loopml.monitor.traffic import join_labels, performance, read_feedback, read_log, retraining_rows
from loopml.project import Project

# Outcomes that end a cycle with something done; `--once` stops after one of them.
FINAL = {"promoted", "rolled_back", "gates_failed", "retrain_failed", "canary_failed"}


@dataclass
class Decision:
    kind: str  # ok, waiting, cooling_down, retrain_failed, gates_failed, canary_failed, promoted, rolled_back
    reason: str
    version: str | None = None  # the version the decision is about
    evidence: dict[str, Any] = field(default_factory=dict)


class Loop:
    def __init__(
        self, project: Project, echo: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.project = project
        self.cfg = project.config.loop
        self.echo = echo
        self.sleep = sleep
        self.server = ServerClient(self.cfg.server)
        self.state_file = project.state / "loop.json"
        self.log_file = project.reports / "loop.log"

    # -- the watch ---------------------------------------------------------------------------
    def watch(self, once: bool = False, max_cycles: int | None = None) -> Decision:
        """Cycle every `loop.check_every_s` seconds; with `once`, stop after the first action."""
        cycles = 0
        while True:
            decision = self.cycle()
            cycles += 1
            if (once and decision.kind in FINAL) or (max_cycles and cycles >= max_cycles):
                return decision
            self.sleep(self.cfg.check_every_s)

    def cycle(self) -> Decision:
        from loopml import registry

        open_canary = self._state().get("open_canary")
        if open_canary:
            return self._resume_canary(open_canary)
        champion = registry.champion(self.project)
        if champion is None:
            return self._note(Decision("waiting", "no champion yet: run `loopml run` first"))
        version = champion["version"]
        state = self._state()
        now = time.time()
        since = max(now - parse_duration(self.cfg.since), state.get("last_decision_at", 0.0))
        health = check(self.project, since, [version])[0]
        trigger = self._trigger(health)
        if trigger is None:
            return self._note(Decision("ok", f"v{version}: {self._describe(health)}; nothing to do", version))
        cooling = state.get("last_decision_at", 0.0) + self.cfg.cooldown_s - now
        if cooling > 0:
            return self._note(
                Decision(
                    "cooling_down",
                    f"{trigger}, but the last decision was less than loop.cooldown_s ago; {cooling:.0f} s to go",
                    version,
                )
            )
        labelled = join_labels(read_log(self.project.inference_log, since), read_feedback(self.project.inference_log))
        if len(labelled) < self.cfg.min_labelled:
            return self._note(
                Decision(
                    "waiting",
                    f"{trigger}; {len(labelled)} labelled traffic rows, "
                    f"loop.min_labelled is {self.cfg.min_labelled}: send feedback "
                    "(POST /feedback or `loopml feedback FILE`)",
                    version,
                )
            )
        return self._retrain_and_canary(champion, health, trigger, labelled)

    # -- triggers ------------------------------------------------------------------------------
    def _trigger(self, health: VersionHealth) -> str | None:
        task = self.project.config.task
        reasons = []
        if self.cfg.on_drift and health.drift and health.rows >= self.cfg.min_rows and health.drift.dataset_drift:
            drifted = [c.column for c in health.drift.columns if c.drifted]
            reasons.append(
                f"dataset drift on v{health.version}'s last {health.rows} rows "
                f"({len(drifted)} of {len(health.drift.columns)} columns, e.g. {', '.join(drifted[:4])})"
            )
        drop = health.metric_drop(task)
        if (
            self.cfg.max_metric_drop is not None
            and drop is not None
            and health.live["labelled"] >= self.cfg.min_labelled
            and drop > self.cfg.max_metric_drop
        ):
            metric = LIVE_METRIC[task]
            reasons.append(
                f"live {metric} {health.live[metric]:.4f} on {health.live['labelled']} labelled rows is "
                f"{drop:.4f} worse than evaluated {health.evaluated:.4f} (loop.max_metric_drop "
                f"{self.cfg.max_metric_drop})"
            )
        return "; ".join(reasons) or None

    def _describe(self, health: VersionHealth) -> str:
        metric = LIVE_METRIC[self.project.config.task]
        live = health.live.get(metric)
        drift = f"drift share {health.drift.drift_share:.2f}" if health.drift else "no drift check"
        shown = f"live {metric} {live:.4f}" if live is not None else "no labels"
        return f"{health.rows} rows, {drift}, {shown}"

    # -- retrain -------------------------------------------------------------------------------
    def _retrain_and_canary(self, champion: dict, health: VersionHealth, trigger: str, labelled) -> Decision:
        from loopml import pipeline

        cfg = self.project.config
        self.echo(f"retraining: {trigger}")
        features = [c for c in health.reference.columns if c != PREDICTION_COLUMN] if health.reference else None
        features = features or [
            c for c in labelled.columns if c not in ("id", "time", "version", "row", "label", PREDICTION_COLUMN)
        ]
        rows = retraining_rows(labelled, features, cfg.data.target)
        self.project.traffic_dir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        batch = self.project.traffic_dir / f"traffic-{stamp}.parquet"
        rows.to_parquet(batch, index=False)
        dvc_hash = pipeline.dvc_add(self.project.root, cfg.data.traffic)
        evidence = {
            "trigger": trigger,
            "champion": champion["version"],
            "champion_health": _brief(health, cfg.task),
            "retraining_rows_added": len(rows),
            "traffic_batch": str(batch.relative_to(self.project.root)),
            "traffic_dvc_md5": dvc_hash,
        }
        tail: deque[str] = deque(maxlen=30)

        def echo(line: str) -> None:
            tail.append(line)
            self.echo(line)

        runs, code = pipeline.repro(self.project, echo=echo, extra_env={"LOOPML_REGISTER_AS": "challenger"})
        evidence["stages"] = {r.name: r.status for r in runs}
        if code != 0:
            evaluated = self.project.read_result("evaluate") or {}
            failed_stage = next((r.name for r in runs if r.status == "failed"), "unknown")
            evidence["output_tail"] = list(tail)
            if failed_stage == "register" and evaluated.get("registrable") is False:
                failed = [g for g in evaluated.get("gates", []) if not g["passed"]]
                evidence["gates"] = failed
                why = ", ".join(f"{g['metric']} {g['value']} not {g['rule']}" for g in failed)
                return self._decide(
                    Decision(
                        "gates_failed",
                        f"retrained on {len(rows)} new labelled rows "
                        f"({trigger}); the new model failed the gates: {why}; "
                        f"v{champion['version']} stays champion",
                        None,
                        evidence,
                    )
                )
            return self._decide(
                Decision(
                    "retrain_failed",
                    f"the pipeline failed at stage {failed_stage} (exit {code}"
                    + "".join(f": {line}" for line in tail if line.startswith("error:"))[:400]
                    + f"); v{champion['version']} stays champion; the output is in the evidence",
                    None,
                    evidence,
                )
            )
        registered = self.project.read_result("register") or {}
        version = registered.get("version")
        if not version or version == champion["version"]:
            return self._decide(Decision("retrain_failed", "the pipeline registered no new version", None, evidence))
        evidence["challenger_evaluation"] = (self.project.read_result("evaluate") or {}).get("metrics")
        return self._canary(champion["version"], version, evidence)

    # -- canary --------------------------------------------------------------------------------
    def _canary(self, champion: str, challenger: str, evidence: dict) -> Decision:
        from loopml import registry

        percent = self.cfg.canary_percent
        try:
            before = self.server.snapshot()
            self.server.open_canary("challenger", percent)
        except ServerUnreachable as exc:
            evidence["error"] = str(exc)
            return self._decide(
                Decision(
                    "canary_failed",
                    f"v{challenger} is registered as challenger but no "
                    f"canary could open: {exc}; promote it by hand with `loopml models "
                    f"promote {challenger}` if you trust the gates",
                    challenger,
                    evidence,
                )
            )
        opened = time.time()
        registry.tag_version(
            self.project,
            challenger,
            {"loopml.canary": json.dumps({"percent": percent, "opened": _iso(opened), "against": champion})},
        )
        # a watcher stopped mid-canary picks it up where it was (see `cycle`)
        snapshot = {v: asdict(t) for v, t in before.items()}
        self._save_state({"open_canary": {"champion": champion, "challenger": challenger, "opened": opened,
                                          "before": snapshot, "evidence": evidence}})  # fmt: skip
        return self._await_canary(champion, challenger, opened, before, evidence)

    def _await_canary(self, champion: str, challenger: str, opened: float, before: dict, evidence: dict) -> Decision:
        """Wait for labelled live rows on both versions (or the deadline), then promote or roll back."""
        from loopml import registry

        self.echo(
            f"canary: v{challenger} against v{champion}; waiting for "
            f"{self.cfg.canary_min_labelled} labelled rows on each version"
        )
        deadline = opened + self.cfg.canary_max_wait_s
        while True:
            labelled = join_labels(
                read_log(self.project.inference_log, opened), read_feedback(self.project.inference_log)
            )
            counts = labelled["version"].value_counts()
            enough = all(counts.get(v, 0) >= self.cfg.canary_min_labelled for v in (champion, challenger))
            if enough or time.time() >= deadline:
                break
            self.sleep(min(2.0, self.cfg.check_every_s))
        after = self.server.snapshot()
        judged = self._judge(champion, challenger, labelled, before, after, enough)
        evidence["canary"] = judged["evidence"]
        self._save_state({"open_canary": None})
        if judged["promote"]:
            registry.promote(self.project, challenger, f"won its canary against v{champion}: {judged['why']}")
            self.server.reload()
            self.server.close_canary()
            return self._decide(
                Decision("promoted", f"v{challenger} promoted over v{champion}: {judged['why']}", challenger, evidence)
            )
        self.server.close_canary()
        registry.reject(self.project, challenger, f"lost its canary against v{champion}: {judged['why']}")
        return self._decide(
            Decision(
                "rolled_back",
                f"v{challenger} rolled back, v{champion} keeps all traffic: {judged['why']}",
                challenger,
                evidence,
            )
        )

    def _resume_canary(self, open_canary: dict) -> Decision:
        before = {v: VersionTraffic(t["requests"], t["errors"], {float(k): n for k, n in t["buckets"].items()})
                  for v, t in open_canary["before"].items()}  # fmt: skip
        self.echo(f"resuming the canary of v{open_canary['challenger']} opened at {_iso(open_canary['opened'])}")
        return self._await_canary(open_canary["champion"], open_canary["challenger"], open_canary["opened"], before,
                                  open_canary["evidence"])  # fmt: skip

    def _judge(self, champion: str, challenger: str, labelled, before, after, enough: bool) -> dict:
        task = self.project.config.task
        metric = LIVE_METRIC[task]
        live = {v: performance(task, labelled[labelled["version"] == v]) for v in (champion, challenger)}
        served = {v: after.get(v).minus(before.get(v)) if after.get(v) else None for v in (champion, challenger)}
        p95 = {v: s.p95_ms() if s else None for v, s in served.items()}
        errors = {v: s.error_rate() if s else 0.0 for v, s in served.items()}
        requests = {v: s.requests if s else 0 for v, s in served.items()}
        evidence = {
            "live": live,
            "p95_ms": p95,
            "error_rate": errors,
            "requests": requests,
            "prediction_psi": _prediction_psi(labelled, champion, challenger),
        }
        if not enough:
            counts = {v: live[v]["labelled"] for v in live}
            why = (
                f"after loop.canary_max_wait_s ({self.cfg.canary_max_wait_s:g} s) only {counts} labelled rows "
                f"(needed {self.cfg.canary_min_labelled} each): not enough evidence to promote"
            )
            return {"promote": False, "why": why, "evidence": evidence}
        a, b = live[champion][metric], live[challenger][metric]
        gain = (b - a) if task == "classification" else (a - b)
        checks = [
            (
                gain >= self.cfg.promote_margin,
                f"live {metric} {b:.4f} vs {a:.4f} on {live[challenger]['labelled']}/{live[champion]['labelled']} "
                f"labelled rows (gain {gain:+.4f}, needed >= {self.cfg.promote_margin:g})",
            )
        ]
        extra_errors = errors[challenger] - errors[champion]
        checks.append(
            (
                extra_errors <= self.cfg.max_error_rate,
                f"5xx share {errors[challenger]:.4f} vs {errors[champion]:.4f} (at most +{self.cfg.max_error_rate:g})",
            )
        )
        if p95[champion] and p95[challenger]:
            ratio = p95[challenger] / p95[champion]
            checks.append(
                (
                    ratio <= self.cfg.max_latency_ratio,
                    f"p95 {p95[challenger]:.1f} ms vs {p95[champion]:.1f} ms ({ratio:.2f}x, at most "
                    f"{self.cfg.max_latency_ratio:g}x)",
                )
            )
        failed = [text for ok, text in checks if not ok]
        why = ("; ".join(failed) + " — not promoted") if failed else "; ".join(text for _, text in checks)
        return {"promote": not failed, "why": why, "evidence": evidence}

    # -- records -------------------------------------------------------------------------------
    def _decide(self, decision: Decision) -> Decision:
        """An action taken: MLflow run + version tag + log line, and the cooldown starts."""
        from loopml import registry

        when = time.time()
        self._save_state({"last_decision_at": when, "last_decision": decision.kind})
        evidence = json.dumps(decision.evidence, default=_plain)
        with registry.run(self.project):
            import mlflow

            mlflow.set_tag("mlflow.runName", f"loop {decision.kind}")
            registry.set_tags(
                {
                    "loopml.stage": "loop",
                    "loopml.decision": decision.kind,
                    "loopml.reason": decision.reason[:5000],
                    "loopml.version": decision.version or "",
                    "loopml.evidence": evidence[:5000],  # whole in loop/evidence.json
                }
            )
            mlflow.log_text(evidence, "loop/evidence.json")
        if decision.version:
            registry.tag_version(
                self.project,
                decision.version,
                {
                    "loopml.loop.decision": json.dumps(
                        {"decision": decision.kind, "when": _iso(when), "why": decision.reason}
                    )
                },
            )
        return self._note(decision, record=True)

    def _note(self, decision: Decision, record: bool = False) -> Decision:
        """Echo every cycle; the log file gets actions, and waits whose reason changed."""
        line = f"{_iso(time.time())} {decision.kind}: {decision.reason}"
        self.echo(line)
        key = f"{decision.kind}: {decision.reason}"
        if record or (decision.kind != "ok" and self._state().get("last_note") != key):
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("a") as handle:
                handle.write(line + "\n")
            self._save_state({"last_note": key})
        return decision

    def _state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}

    def _save_state(self, state: dict) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({**self._state(), **state}, default=_plain))


def _prediction_psi(labelled, champion: str, challenger: str) -> float | None:
    """How differently the two versions predict on the canary's traffic (PSI of the predictions)."""
    from loopml.data.drift import compare
    from loopml.data.profile import Profile

    a = labelled.loc[labelled["version"] == champion, [PREDICTION_COLUMN]]
    b = labelled.loc[labelled["version"] == challenger, [PREDICTION_COLUMN]]
    if a.empty or b.empty:
        return None
    return compare(Profile.fit(a), b).columns[0].stats.get("psi")


def _brief(health: VersionHealth, task: str) -> dict:
    brief = health.as_dict(task)
    brief.pop("drift")
    return brief


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)
