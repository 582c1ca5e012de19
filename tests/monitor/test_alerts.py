"""The watcher's Alertmanager webhook over real HTTP on loopback: who may post, what is a payload,
which alerts start a cycle and which are ignored (and said so)."""

from __future__ import annotations

import httpx
import pytest

from loopml.errors import ConfigError
from loopml.monitor.alerts import AlertInbox
from tests.conftest import free_port

TOKEN = "alert-test-token"


def payload(*alerts: dict) -> dict:
    return {"version": "4", "status": "firing", "receiver": "loopml", "alerts": list(alerts)}


def alert(model: str = "digits", status: str = "firing", **labels: str) -> dict:
    return {"status": status, "startsAt": "2026-11-30T12:00:00Z", "annotations": {"summary": "drifted"},
            "labels": {"alertname": "LoopmlDatasetDrift", "model": model, "version": "1",
                       "loopml_action": "retrain", **labels}}  # fmt: skip


@pytest.fixture
def inbox():
    said: list[str] = []
    box = AlertInbox(f"127.0.0.1:{free_port()}", TOKEN, "digits", said.append)
    box.said = said
    yield box
    box.close()


def post(inbox: AlertInbox, body, token: str | None = TOKEN, path: str = "/alerts") -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    url = inbox.url.removesuffix("/alerts") + path
    if isinstance(body, bytes):
        return httpx.post(url, content=body, headers=headers, timeout=5)
    return httpx.post(url, json=body, headers=headers, timeout=5)


def test_a_firing_retrain_alert_for_this_model_is_queued(inbox):
    answer = post(inbox, payload(alert()))
    assert answer.status_code == 200 and answer.json() == {"queued": 1, "ignored": []}
    taken = inbox.take()
    assert taken.name == "LoopmlDatasetDrift" and taken.version == "1" and taken.starts_at == "2026-11-30T12:00:00Z"
    assert taken.describe() == "alert LoopmlDatasetDrift for digits v1, firing since 2026-11-30T12:00:00Z: drifted"
    assert inbox.take() is None


def test_other_models_resolved_and_unlabelled_alerts_are_ignored_and_said(inbox):
    answer = post(inbox, payload(alert(model="churn"), alert(status="resolved"), alert(loopml_action="page")))
    assert answer.status_code == 200 and answer.json()["queued"] == 0
    ignored = answer.json()["ignored"]
    assert "LoopmlDatasetDrift is for model 'churn'; this watcher runs 'digits'" in ignored
    assert "LoopmlDatasetDrift is resolved" in ignored
    assert "LoopmlDatasetDrift has no label loopml_action: retrain" in ignored
    assert all(any(why in line for line in inbox.said) for why in ignored)  # the watcher's log says each
    assert inbox.take() is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "the body is not JSON"),
        ({"alerts": "all of them"}, 'an object with an "alerts" list'),
        (payload({"status": "firing", "labels": ["a"]}), "alerts[0].labels must be an object of strings"),
        (payload({"status": "burning", "labels": {}}), 'alerts[0].status must be "firing" or "resolved"'),
    ],
)
def test_a_malformed_payload_is_a_400_and_starts_nothing(inbox, body, expected):
    answer = post(inbox, body)
    assert answer.status_code == 400 and expected in answer.json()["error"]
    assert inbox.take() is None


def test_only_the_token_holder_may_post_to_alerts(inbox):
    assert post(inbox, payload(alert()), token=None).status_code == 401
    assert post(inbox, payload(alert()), token="guess").status_code == 401
    assert post(inbox, payload(alert()), path="/other").status_code == 404
    assert httpx.get(inbox.url, timeout=5).status_code == 405
    assert post(inbox, b"x" * (2 << 20)).status_code == 413
    assert inbox.take() is None


def test_alerts_need_a_token():
    with pytest.raises(ConfigError, match="loop.alerts needs a token: set LOOPML_ALERT_TOKEN"):
        AlertInbox(f"127.0.0.1:{free_port()}", None, "digits", print)
