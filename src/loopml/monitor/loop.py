"""`loopml monitor --watch`: the loop controller (its decisions live in `policy`, pure and tested).

Each cycle reads the champion's recent traffic from the inference log. When its inputs drift
(dataset drift), its live accuracy falls (policy in `loop:`) or, with `loop.alerts`, Alertmanager
posts a retrain alert for it (`monitor.alerts`), the controller:

1. checks the labelled recent traffic (labels against the model's classes or range, rows against
   the schema's structure and `data.rules`), puts the rows that fail in `data/quarantine/` with the
   reason, writes the rest to `data/traffic/` and `dvc add`s it (a new DVC version of the
   retraining set: the raw data plus every labelled batch so far);
2. re-runs the pipeline (`dvc repro`); a model that passes the gates is registered as
   `challenger` (never straight to `champion`); a batch that fails validation there is moved to
   quarantine too, so the next clean cycle is not blocked;
3. opens a canary on the running server and waits for labelled live traffic on both versions
   (a restarted server is noticed: the canary is opened again and counting starts over);
4. promotes the challenger (moves `champion`, reloads the server) or rejects it (closes the
   canary, tags the version), on live accuracy, 5xx share and p95 latency.

Every decision and its evidence is an MLflow run (tags `loopml.decision`, `loopml.evidence`), a tag
on the model version concerned, and a line in `reports/loop.log`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from loopml import metric
from loopml.config import parse_duration
from loopml.contracts import EvaluateResult, RegisterResult, Tag, plain
from loopml.data.inference_log import LabelRules, LogPolicy, join_labels, read_feedback, read_log
from loopml.data.profile import PREDICTION_COLUMN
from loopml.errors import LoopmlError
from loopml.monitor import policy
from loopml.monitor.alerts import TOKEN_ENV, Alert, AlertInbox
from loopml.monitor.check import VersionHealth, check
from loopml.monitor.server_client import ServerClient, ServerUnreachable, Snapshot, VersionTraffic
from loopml.monitor.traffic import performance, retraining_rows
from loopml.project import Project

# Outcomes that end a cycle with something done.
FINAL = {"promoted", "rolled_back", "gates_failed", "retrain_failed", "canary_failed"}
LOG_COLUMNS = ("id", "time", "version", "row", "label", PREDICTION_COLUMN)


@dataclass
class Decision:
    # ok, waiting, cooling_down, cannot_retrain, retrain_failed, gates_failed, canary_failed, promoted, rolled_back
    kind: str
    reason: str
    version: str | None = None  # the version the decision is about
    evidence: dict[str, Any] = field(default_factory=dict)


class Loop:
    def __init__(self, project: Project, server: ServerClient | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 retrain: Callable[[Callable[[str], None]], tuple[list, int]] | None = None,
                 echo: Callable[[str], None] = print, registry=None) -> None:  # fmt: skip
        from loopml.registry import Registry

        self.project = project
        self.cfg = project.config.loop
        self.task = project.config.task
        self.echo = echo
        self.clock = clock
        self.sleep = sleep
        self.server = server or ServerClient(self.cfg.server)
        self.registry = registry or Registry.of(project)
        self.retrain = retrain or self._repro
        self.state_file = project.state / "loop.json"
        self.log_file = project.reports / "loop.log"
        self.inbox: AlertInbox | None = None  # Alertmanager webhooks, while watching with loop.alerts
        self._alert: Alert | None = None  # the alert the current cycle answers

    def _repro(self, echo: Callable[[str], None]) -> tuple[list, int]:
        from loopml import pipeline

        return pipeline.repro(self.project, as_challenger=True, echo=echo)

    # -- the watch ---------------------------------------------------------------------------
    def watch(self, once: bool = False, max_cycles: int | None = None) -> Decision:
        """Cycle every `loop.check_every_s` seconds; `once`: stop after one check (and what it started)."""
        if self.cfg.alerts and self.inbox is None:
            import os

            self.inbox = AlertInbox(self.cfg.alerts_listen, os.environ.get(TOKEN_ENV), self.project.config.name,
                                    self.echo)  # fmt: skip
            self.echo(f"taking Alertmanager alerts on {self.inbox.url}")
        cycles = 0
        try:
            while True:
                decision = self.cycle()
                cycles += 1
                # with alerts on, --once waits for something to act on (an alert may be what starts it)
                acted = self.inbox is None or decision.kind in FINAL or "alert" in decision.evidence
                if (once and acted) or (max_cycles and cycles >= max_cycles):
                    return decision
                if self.inbox is not None:
                    self.inbox.wait(self.cfg.check_every_s)
                else:
                    self.sleep(self.cfg.check_every_s)
        finally:
            if self.inbox is not None:
                self.inbox.close()
                self.inbox = None

    def cycle(self) -> Decision:
        self._alert = None
        state = self._state()
        if state.get("open_canary"):
            return self._resume_canary(state["open_canary"])
        champion = self.registry.champion()
        if champion is None:
            return self._note(Decision("waiting", "no champion yet: run `loopml run` first"))
        version = champion.version
        now = self.clock()
        since = max(now - parse_duration(self.cfg.since), state.get("last_decision_at", 0.0))
        found = check(self.project, since, [version], self.registry)[0]
        health = found.health(self.task)
        trigger = policy.retrain_trigger(health, self.task, self.cfg)
        alert = self.inbox.take() if self.inbox is not None else None
        if alert is not None:
            trigger = "; ".join(filter(None, [alert.describe(), trigger]))
            self._alert = alert
        if trigger is None:
            return self._note(Decision("ok", f"v{version}: {self._describe(found)}; nothing to do", version))
        cooling = policy.cooldown_left(state.get("last_decision_at", 0.0), now, self.cfg)
        if cooling > 0:
            return self._note(Decision("cooling_down", f"{trigger}, but the last decision was less than "
                                       f"loop.cooldown_s ago; {cooling:.0f} s to go", version))  # fmt: skip
        features = [c for c in found.reference.columns if c != PREDICTION_COLUMN] if found.reference else []
        private = [c for c in features if LogPolicy.of(self.project.config.monitor, self.project.inference_log)
                   .action(c) != "keep"]  # fmt: skip
        if private:
            return self._note(Decision("cannot_retrain", f"{trigger}; but the inference log hashes or drops "
                                       f"{private[:5]} (monitor.log_columns), so its traffic cannot be trained on: "
                                       "retrain on fresh raw data by hand", version))  # fmt: skip
        labelled = join_labels(read_log(self.project.inference_log, since), read_feedback(self.project.inference_log))
        if len(labelled) < self.cfg.min_labelled:
            return self._note(Decision("waiting", f"{trigger}; {len(labelled)} labelled traffic rows, "
                                       f"loop.min_labelled is {self.cfg.min_labelled}: send feedback (POST /feedback "
                                       "or `loopml feedback FILE`)", version))  # fmt: skip
        return self._retrain_and_canary(version, found, trigger, labelled, features)

    def _describe(self, found: VersionHealth) -> str:
        name = metric.PRIMARY[self.task]
        live = found.live.get(name)
        if found.drift is None:
            drift = "no drift check"
        elif not found.drift.enough_rows:
            drift = f"too few rows for a drift verdict (monitor.min_rows {self.project.config.monitor.min_rows})"
        else:
            drift = f"drift share {found.drift.drift_share:.2f}"
        shown = f"live {name} {live:.4f}" if live is not None else "no labels"
        return f"{found.rows} rows, {drift}, {shown}"

    # -- retrain -------------------------------------------------------------------------------
    def _retrain_and_canary(self, champion: str, found: VersionHealth, trigger: str, labelled: pd.DataFrame,
                            features: list[str]) -> Decision:  # fmt: skip
        from loopml import pipeline

        cfg = self.project.config
        self.echo(f"retraining: {trigger}")
        features = features or [c for c in labelled.columns if c not in LOG_COLUMNS]
        meta = self.registry.package_meta(champion)
        span = meta.get("target_range")
        rules = LabelRules(meta.get("classes"), tuple(span) if span else None, cfg.monitor.label_margin)
        rows, quarantined = retraining_rows(labelled, features, cfg.data.target, rules)
        rows, more = self._screen(rows)
        quarantined = pd.concat([quarantined, more], ignore_index=True) if len(more) else quarantined
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        evidence: dict[str, Any] = {"trigger": trigger, "champion": champion,
                                    "champion_health": _brief(found, self.task), "retraining_rows_added": len(rows),
                                    "quarantined_rows": len(quarantined)}  # fmt: skip
        if self._alert is not None:
            evidence["alert"] = asdict(self._alert)
        if len(quarantined):
            self.project.quarantine_dir.mkdir(parents=True, exist_ok=True)
            where = self.project.quarantine_dir / f"quarantine-{stamp}.parquet"
            _to_parquet(quarantined, where)
            evidence["quarantine"] = str(where.relative_to(self.project.root))
            self.echo(f"quarantined {len(quarantined)} labelled row(s) that do not fit the model: {where}")
        if rows.empty:
            return self._decide(
                Decision(
                    "retrain_failed",
                    f"{trigger}; every labelled row failed the checks "
                    f"({len(quarantined)} quarantined): nothing to retrain on",
                    None,
                    evidence,
                )
            )
        self.project.traffic_dir.mkdir(parents=True, exist_ok=True)
        batch = self.project.traffic_dir / f"traffic-{stamp}.parquet"
        _to_parquet(rows, batch)
        evidence["traffic_batch"] = str(batch.relative_to(self.project.root))
        evidence["traffic_dvc_md5"] = pipeline.dvc_add(self.project.root, cfg.data.traffic)
        tail: deque[str] = deque(maxlen=30)

        def echo(line: str) -> None:
            tail.append(line)
            self.echo(line)

        runs, code = self.retrain(echo)
        evidence["stages"] = {r.name: r.status for r in runs}
        if self.project.config.remote.url:  # the new data version travels, so a clone can reproduce it
            evidence["data_push"] = self._push()
        if code != 0:
            return self._retrain_failed(runs, code, tail, batch, champion, trigger, len(rows), evidence)
        registered = self.project.read_result(RegisterResult)
        if registered is None or registered.version == champion:
            return self._decide(Decision("retrain_failed", "the pipeline registered no new version", None, evidence))
        evaluated = self.project.read_result(EvaluateResult)
        evidence["challenger_evaluation"] = evaluated.metrics if evaluated else None
        return self._canary(champion, registered.version, evidence)

    def _screen(self, rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rows against the schema's structure and data.rules: (good, failing with a `reason`)."""
        from loopml.data.schema import failing_rows, load_schema, structural

        cfg = self.project.config
        if not self.project.schema_path.exists() or rows.empty:
            return rows, rows.iloc[:0]
        bad = failing_rows(rows, structural(load_schema(self.project.schema_path)), cfg.data.rules, cfg.data.target)
        if not bad:
            return rows, rows.iloc[:0]
        mask = rows.index.isin(list(bad))
        failing = rows[mask].assign(reason=[bad[i] for i in rows.index[mask]])
        return rows[~mask].reset_index(drop=True), failing.reset_index(drop=True)

    def _retrain_failed(self, runs, code: int, tail, batch, champion: str, trigger: str, added: int,
                        evidence: dict) -> Decision:  # fmt: skip
        from loopml import pipeline

        evaluated = self.project.read_result(EvaluateResult)
        failed_stage = next((r.name for r in runs if r.status == "failed"), "unknown")
        evidence["output_tail"] = list(tail)
        if failed_stage == "register" and evaluated is not None and not evaluated.registrable:
            evidence["gates"] = plain(evaluated.failed)
            why = ", ".join(f"{g.metric} {g.value} not {g.rule}" for g in evaluated.failed)
            return self._decide(
                Decision(
                    "gates_failed",
                    f"retrained on {added} new labelled rows ({trigger}); the new "
                    f"model failed the gates: {why}; v{champion} stays champion",
                    None,
                    evidence,
                )
            )
        if failed_stage == "validate" and batch.exists():  # this batch broke validation: out of the training set
            self.project.quarantine_dir.mkdir(parents=True, exist_ok=True)
            moved = self.project.quarantine_dir / batch.name.replace("traffic-", "quarantine-").replace(
                ".parquet", "-failed-validation.parquet")  # fmt: skip
            why = " ".join(line for line in tail if line.startswith(("error:", "  ")))[:500] or "validation failed"
            _to_parquet(pd.read_parquet(batch).assign(reason=f"the retrain failed validation: {why}"), moved)
            batch.unlink()
            pipeline.dvc_add(self.project.root, self.project.config.data.traffic)
            evidence["quarantine_batch"] = str(moved.relative_to(self.project.root))
        errors = "".join(f": {line}" for line in tail if line.startswith("error:"))[:400]
        return self._decide(
            Decision(
                "retrain_failed",
                f"the pipeline failed at stage {failed_stage} (exit {code}{errors}); "
                f"v{champion} stays champion; the output is in the evidence",
                None,
                evidence,
            )
        )

    # -- canary --------------------------------------------------------------------------------
    def _canary(self, champion: str, challenger: str, evidence: dict) -> Decision:
        percent = self.cfg.canary_percent
        try:
            before = self.server.snapshot()
            self.server.open_canary("challenger", percent)
        except ServerUnreachable as exc:
            evidence["error"] = str(exc)
            return self._decide(Decision("canary_failed", f"v{challenger} is registered as challenger but no canary "
                                         f"could open: {exc}; promote it by hand with `loopml models promote "
                                         f"{challenger}` if you trust the gates", challenger, evidence))  # fmt: skip
        opened = self.clock()
        self.registry.tag_version(challenger, {Tag.CANARY: json.dumps({"percent": percent, "opened": _iso(opened),
                                                                       "against": champion})})  # fmt: skip
        self._save_open(champion, challenger, opened, before, evidence)
        return self._await_canary(champion, challenger, opened, before, evidence)

    def _save_open(self, champion: str, challenger: str, opened: float, before: Snapshot, evidence: dict) -> None:
        """A watcher stopped mid-canary picks it up where it was (see `cycle`)."""
        self._save_state({"open_canary": {"champion": champion, "challenger": challenger, "opened": opened,
                                          "started": before.started,
                                          "before": {v: asdict(t) for v, t in before.versions.items()},
                                          "evidence": evidence}})  # fmt: skip

    def _await_canary(self, champion: str, challenger: str, opened: float, before: Snapshot,
                      evidence: dict) -> Decision:  # fmt: skip
        """Wait for labelled live rows on both versions (or the deadline), then promote or roll back."""
        self.echo(f"canary: v{challenger} against v{champion}; waiting for {self.cfg.canary_min_labelled} labelled "
                  "rows on each version")  # fmt: skip
        deadline = opened + self.cfg.canary_max_wait_s
        versions = (champion, challenger)
        while True:
            now_snapshot = self._snapshot_or_none()
            if now_snapshot is not None and now_snapshot.restarted_since(before):
                reopened = self._reopen(challenger, evidence)
                if reopened is not None:
                    return reopened
                before, opened = now_snapshot, self.clock()  # counting starts over on the new server
                deadline = opened + self.cfg.canary_max_wait_s
                self._save_open(champion, challenger, opened, before, evidence)
            labelled = join_labels(
                read_log(self.project.inference_log, opened), read_feedback(self.project.inference_log)
            )
            counts = labelled["version"].value_counts().to_dict() if len(labelled) else {}
            enough = policy.canary_ready(counts, versions, self.cfg)
            if enough or self.clock() >= deadline:
                break
            self.sleep(min(2.0, self.cfg.check_every_s))
        after = self._snapshot_or_none() or before
        served = {v: t.served() for v, t in after.since(before).items() if v in versions}
        live = {v: performance(self.task, labelled[labelled["version"] == v]) for v in versions}
        verdict = policy.judge_canary(self.task, self.cfg, champion, challenger, live, served, enough)
        evidence["canary"] = {"live": live, "p95_ms": {v: s.p95_ms for v, s in served.items()},
                              "error_rate": {v: s.error_rate for v, s in served.items()},
                              "requests": {v: s.requests for v, s in served.items()},
                              "prediction_psi": _prediction_psi(labelled, champion, challenger)}  # fmt: skip
        self._save_state({"open_canary": None})
        if verdict.promote:
            self.registry.promote(challenger, f"won its canary against v{champion}: {verdict.why}")
            self.server.reload()
            self.server.close_canary()
            return self._decide(Decision("promoted", f"v{challenger} promoted over v{champion}: {verdict.why}",
                                         challenger, evidence))  # fmt: skip
        self.server.close_canary()
        self.registry.reject(challenger, f"lost its canary against v{champion}: {verdict.why}")
        return self._decide(Decision("rolled_back", f"v{challenger} rolled back, v{champion} keeps all traffic: "
                                     f"{verdict.why}", challenger, evidence))  # fmt: skip

    def _snapshot_or_none(self) -> Snapshot | None:
        try:
            return self.server.snapshot()
        except ServerUnreachable:
            return None  # a server restarting; the next poll tells

    def _reopen(self, challenger: str, evidence: dict) -> Decision | None:
        """The server restarted during the canary: open it again (None), or end it with a decision."""
        when = _iso(self.clock())
        try:
            state = self.server.traffic()
            if state.get("canary_version") != challenger:
                self.server.open_canary("challenger", self.cfg.canary_percent)
        except ServerUnreachable as exc:
            self._save_state({"open_canary": None})
            evidence["restart"] = {"at": when, "error": str(exc)}
            return self._decide(Decision("canary_failed", f"the server restarted during the canary of v{challenger} "
                                         f"and the canary could not be opened again ({exc}); v{challenger} stays "
                                         "challenger", challenger, evidence))  # fmt: skip
        evidence.setdefault("restarts", []).append(when)
        self.echo(f"the server restarted at {when}: canary of v{challenger} opened again, counting starts over")
        return None

    def _resume_canary(self, open_canary: dict) -> Decision:
        before = Snapshot(open_canary.get("started"), {
            v: VersionTraffic(t["requests"], t["errors"], {float(k): n for k, n in t["buckets"].items()})
            for v, t in open_canary["before"].items()})  # fmt: skip
        self.echo(f"resuming the canary of v{open_canary['challenger']} opened at {_iso(open_canary['opened'])}")
        return self._await_canary(open_canary["champion"], open_canary["challenger"], open_canary["opened"], before,
                                  open_canary["evidence"])  # fmt: skip

    def _push(self) -> str:
        """Push the data versions to the data remote; a failure is recorded, it does not stop the loop."""
        from loopml.data import remote

        try:
            done = remote.push(self.project)
        except LoopmlError as exc:
            self.echo(f"warning: the data push failed: {exc}")
            return f"failed: {exc}"
        self.echo(f"push: {done.summary} ({done.remote})")
        return done.summary

    # -- records -------------------------------------------------------------------------------
    def _decide(self, decision: Decision) -> Decision:
        """An action taken: MLflow run + version tag + log line, and the cooldown starts."""
        when = self.clock()
        self._save_state({"last_decision_at": when, "last_decision": decision.kind})
        evidence = json.dumps(plain(decision.evidence))
        with self.registry.run(name=f"loop {decision.kind}"):
            self.registry.set_tags({Tag.STAGE: "loop", Tag.DECISION: decision.kind, Tag.REASON: decision.reason[:5000],
                                    Tag.VERSION: decision.version or "", Tag.EVIDENCE: evidence[:5000]})  # fmt: skip
            self.registry.log_text(evidence, "loop/evidence.json")  # whole, beyond the tag's 5000 characters
        if decision.version:
            self.registry.tag_version(decision.version, {Tag.LOOP_DECISION: json.dumps(
                {"decision": decision.kind, "when": _iso(when), "why": decision.reason})})  # fmt: skip
        return self._note(decision, record=True)

    def _note(self, decision: Decision, record: bool = False) -> Decision:
        """Echo every cycle; the log file gets actions, and waits whose reason changed."""
        if self._alert is not None:
            decision.evidence.setdefault("alert", asdict(self._alert))
        line = f"{_iso(self.clock())} {decision.kind}: {decision.reason}"
        self.echo(line)
        key = f"{decision.kind}: {decision.reason}"
        if record or (decision.kind != "ok" and self._state().get("last_note") != key):
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("a") as handle:
                handle.write(line + "\n")
            self._save_state({"last_note": key})
        return decision

    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}
        except ValueError:
            return {}  # a damaged state file: start afresh rather than never again

    def _save_state(self, state: dict) -> None:
        from loopml.fileio import write_text_atomic

        write_text_atomic(self.state_file, json.dumps(plain({**self._state(), **state})))


def _to_parquet(frame: pd.DataFrame, path) -> None:
    """Parquet, with a label column of mixed types (3 and "x") stored as text rather than refused."""
    try:
        frame.to_parquet(path, index=False)
    except (TypeError, ValueError):
        frame.astype({c: str for c in frame.columns if frame[c].dtype == object}).to_parquet(path, index=False)


def _prediction_psi(labelled, champion: str, challenger: str) -> float | None:
    """How differently the two versions predict on the canary's traffic (PSI of the predictions)."""
    from loopml.data.drift import compare
    from loopml.data.profile import Profile

    a = labelled.loc[labelled["version"] == champion, [PREDICTION_COLUMN]] if len(labelled) else None
    b = labelled.loc[labelled["version"] == challenger, [PREDICTION_COLUMN]] if len(labelled) else None
    if a is None or a.empty or b.empty:
        return None
    return compare(Profile.fit(a), b).columns[0].stats.get("psi")


def _brief(found: VersionHealth, task: str) -> dict:
    brief = found.as_dict(task)
    brief.pop("drift")
    return brief


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")
