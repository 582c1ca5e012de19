"""Hot reload under load drops nothing; canary splits traffic; admin endpoints need the token."""

import json
import threading
import time
from collections import Counter

import httpx
import pytest

from loopml.project import Project
from loopml.registry import Registry
from loopml.uri import ModelRef
from tests.serve.conftest import settings_for

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token"
ROW = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [0.0] * 64}]}


def second_version(project, make_champion: bool) -> str:
    """Register the trained model again as a new version (what a retrain would do, minus training)."""
    trained = json.loads((project / "outputs" / "train.json").read_text())
    registry = Registry.of(Project(project))
    with registry.run() as run_id:  # a new run: registering the same run again would reuse its version
        pass
    aliases = ["challenger", "champion"] if make_champion else ["challenger"]
    version, _ = registry.register(run_id, trained["model_uri"], {}, aliases, "test")
    return version.version


def test_reload_under_load_drops_no_request(digits_copy, start):
    live = start(settings_for(digits_copy, max_delay_ms=1, admin_token=TOKEN))
    assert live.client.post("/v2/models/digits/infer", json=ROW).headers["x-model-version"] == "1"
    second_version(digits_copy, make_champion=True)

    statuses, versions, stop = Counter(), Counter(), threading.Event()

    def load():
        with httpx.Client(base_url=live.url, timeout=30) as client:
            while not stop.is_set():
                response = client.post("/v2/models/digits/infer", json=ROW)
                statuses[response.status_code] += 1
                versions[response.headers.get("x-model-version")] += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 30
        while sum(statuses.values()) < 20 and time.monotonic() < deadline:  # the load is on before the reload
            time.sleep(0.01)
        reloaded = live.client.post("/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})
        assert reloaded.status_code == 200 and reloaded.json() == {"reloaded": True, "version": "2", "previous": "1"}
        for _ in range(50):
            live.client.post("/v2/models/digits/infer", json=ROW)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert set(statuses) == {200} and statuses[200] > 20
    assert versions["1"] > 0 and versions["2"] > 0
    again = live.client.post("/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})
    assert again.json()["reloaded"] is False
    metrics = live.client.get("/metrics").text
    assert 'loopml_requests_total{model="digits",protocol="v2",status="200",version="2"}' in metrics


def test_canary_split_and_traffic_endpoint(digits_copy, start):
    second_version(digits_copy, make_champion=False)  # v2 is the challenger, v1 stays champion
    live = start(
        settings_for(digits_copy, canary=ModelRef("digits", alias="challenger"), canary_percent=30.0, admin_token=TOKEN)
    )
    seen = Counter(live.client.post("/v2/models/digits/infer", json=ROW).headers["x-model-version"] for _ in range(600))
    # binomial(600, 0.3): mean 180, sd 11.2; five sd either way
    assert 124 <= seen["2"] <= 236, seen
    assert 'loopml_traffic_share{model="digits",version="2"} 0.3' in live.client.get("/metrics").text
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert live.client.post("/admin/traffic", json={"canary_percent": 0}, headers=auth).status_code == 200
    assert {live.client.post("/invocations", json={"instances": [[0.0] * 64]}).headers["x-model-version"]
            for _ in range(50)} == {"1"}  # fmt: skip
    assert live.client.post("/admin/traffic", json={"canary_percent": 150}, headers=auth).status_code == 400
    # the canary itself is loaded and unloaded at run time (what `loopml monitor --watch` does)
    unknown = live.client.post("/admin/traffic", json={"canary": "nosuch", "canary_percent": 10}, headers=auth)
    assert unknown.status_code == 404 and "nosuch" in unknown.json()["error"]
    bad = live.client.post("/admin/traffic", json={"canary": "no such!", "canary_percent": 10}, headers=auth)
    assert bad.status_code == 400 and "registry alias" in bad.json()["error"]
    closed = live.client.post("/admin/traffic", json={"canary": None, "canary_percent": 0}, headers=auth)
    assert closed.json() == {"canary_percent": 0.0, "canary_version": None}
    assert live.client.get("/v2/models/digits").json()["versions"] == ["1"]
    opened = live.client.post("/admin/traffic", json={"canary": "challenger", "canary_percent": 100}, headers=auth)
    assert opened.json() == {"canary_percent": 100.0, "canary_version": "2"}
    assert {live.client.post("/invocations", json={"instances": [[0.0] * 64]}).headers["x-model-version"]
            for _ in range(10)} == {"2"}  # fmt: skip


def test_admin_needs_the_right_token_and_inference_the_api_key(digits_run, start):
    no_token = start(settings_for(digits_run))
    assert no_token.client.post("/admin/reload").status_code == 403
    live = start(settings_for(digits_run, admin_token=TOKEN, api_keys=("key-1",)))
    assert live.client.post("/admin/reload").status_code == 401
    assert live.client.post("/admin/reload", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert (
        live.client.post(
            "/admin/traffic", json={"canary_percent": 5}, headers={"authorization": f"Bearer {TOKEN}"}
        ).status_code
        == 409
    )
    assert live.client.post("/v2/models/digits/infer", json=ROW).status_code == 401
    assert live.client.post("/v2/models/digits/infer", json=ROW, headers={"x-api-key": "key-1"}).status_code == 200
    assert live.client.post("/invocations", json={"instances": [[0.0] * 64]},
                            headers={"authorization": "Bearer key-1"}).status_code == 200  # fmt: skip


def test_not_ready_before_the_model_is_loaded(digits_run):
    import asyncio

    from loopml.serve.app import create_app

    async def scenario():
        app = create_app(settings_for(digits_run))  # lifespan not run: nothing loaded
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            ready = await client.get("/v2/health/ready")
            live = await client.get("/v2/health/live")
            infer = await client.post("/v2/models/digits/infer", json=ROW)
        return ready, live, infer

    ready, live, infer = asyncio.run(scenario())
    assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
    assert live.status_code == 200 and infer.status_code == 503


def test_failed_reload_keeps_the_old_version_serving(digits_copy, start, tmp_path):
    live = start(settings_for(digits_copy, admin_token=TOKEN))
    # A new champion whose files cannot be loaded (say, a half-synced artifact store).
    client = Registry.of(Project(digits_copy)).client
    broken = client.create_model_version("digits", source=str(tmp_path / "missing-model"))
    client.set_registered_model_alias("digits", "champion", broken.version)
    response = live.client.post("/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 500 and "keeps serving" in response.json()["error"]
    answer = live.client.post("/v2/models/digits/infer", json=ROW)
    assert answer.status_code == 200 and answer.headers["x-model-version"] == "1"
    assert live.client.get("/v2/health/ready").status_code == 200


def test_with_keys_on_only_the_health_checks_are_open(digits_run, start):
    live = start(settings_for(digits_run, api_keys=("key-1",)))
    for path in ("/metrics", "/openapi.json", "/v2", "/v2/models/digits", "/v2/models/digits/ready", "/version"):
        assert live.client.get(path).status_code == 401, path
        assert live.client.get(path, headers={"x-api-key": "key-1"}).status_code == 200, path
    for path in ("/v2/health/live", "/v2/health/ready", "/ping", "/health"):
        assert live.client.get(path).status_code == 200, path
    assert live.client.post("/feedback", json={"id": "x", "label": 1}).status_code == 401
    forged = live.client.get("/metrics", headers={"x-loopml-internal": "guess"})
    assert forged.status_code == 403  # the workers' header is not a way around the keys
    document = live.client.get("/openapi.json", headers={"x-api-key": "key-1"}).json()
    assert document["paths"]["/metrics"]["get"]["security"] == [{"bearer": []}, {"apiKey": []}]
    scraped = start(settings_for(digits_run, api_keys=("key-1",), public_metrics=True))
    assert scraped.client.get("/metrics").status_code == 200  # serve.public_metrics: a Prometheus without keys
    assert scraped.client.get("/openapi.json").status_code == 401
