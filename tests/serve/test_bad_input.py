"""Every caller mistake gets a 4xx with {"error": ...} that names what was wrong; never a 500."""

import numpy as np
import pytest

from tests.serve.conftest import settings_for

pytestmark = pytest.mark.slow
ROW = [0.0] * 64


def v2(data, shape, datatype="FP64", name="input"):
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v2/models/digits/infer", v2(ROW[:10], [1, 10]), 400, "shape [rows, 64]"),
        ("/v2/models/digits/infer", v2(ROW, [1, 63]), 400, "needs 63 values"),
        ("/v2/models/digits/infer", v2(["a"] * 64, [1, 64], "BYTES"), 400, "datatype must be a numeric"),
        ("/v2/models/digits/infer", v2(["x"] * 64, [1, 64]), 400, "must hold FP64 numbers"),
        ("/v2/models/digits/infer", v2([float("nan")] + ROW[1:], [1, 64]), 400, "NaN and infinity are rejected"),
        ("/v2/models/digits/infer", v2(ROW, [1, 64], name="pixels"), 400, "unknown input 'pixels'"),
        ("/v2/models/digits/infer", {"inputs": []}, 400, 'non-empty "inputs"'),
        ("/v2/models/digits/infer", v2(ROW * 65, [65, 64]), 400, "at most 64"),
        ("/v2/models/digits/infer", {**v2(ROW, [1, 64]), "outputs": [{"name": "logits"}]}, 400, "unknown output"),
        ("/v2/models/other/infer", v2(ROW, [1, 64]), 404, "unknown model 'other'"),
        ("/v2/models/digits/versions/9/infer", v2(ROW, [1, 64]), 404, "no served version '9'"),
        ("/invocations", {"dataframe_split": {"columns": ["pixel_0"], "data": [[1]]}}, 400, "missing feature column"),
        (
            "/invocations",
            {"dataframe_records": [{f"pixel_{i}": ("abc" if i == 3 else 0) for i in range(64)}]},
            400,
            "feature 'pixel_3' must be numeric",
        ),
        ("/invocations", {"instances": [[1, 2]]}, 400, "rows of 64 values"),
        ("/invocations", {"instances": [ROW], "inputs": [ROW]}, 400, "exactly one of"),
        ("/invocations", [1, 2, 3], 400, "must be an object"),
    ],
)
def test_bad_requests(server, path, body, status, words):
    response = server.client.post(
        path, content=__import__("json").dumps(body), headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_malformed_bodies_paths_and_methods(server):
    c = server.client
    assert c.post("/invocations", content=b"{nope", headers={"content-type": "application/json"}).status_code == 400
    assert c.post("/invocations", content=b"a,b\n1", headers={"content-type": "text/plain"}).status_code == 415
    assert (
        c.post("/v2/models/digits/infer", content=b"{}", headers={"inference-header-content-length": "99"}).status_code
        == 400
    )
    assert c.get("/nowhere").status_code == 404 and "error" in c.get("/nowhere").json()
    assert c.get("/invocations").status_code == 405
    assert c.get("/v2/models/digits/infer").status_code == 405
    big = b"0" * (17 * 2**20)
    response = c.post("/invocations", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_binary_size_mismatch(server):
    payload = np.zeros((1, 64)).tobytes()
    header = b'{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP64","parameters":{"binary_data_size":100}}]}'
    response = server.client.post("/v2/models/digits/infer", content=header + payload,
                                  headers={"inference-header-content-length": str(len(header))})  # fmt: skip
    assert response.status_code == 400 and "binary_data_size 100" in response.json()["error"]


def test_timeout_is_504_and_full_queue_is_503(digits_run, start):
    slow = start(settings_for(digits_run, timeout_ms=0.001, max_delay_ms=50))
    response = slow.client.post("/v2/models/digits/infer", json=v2(ROW, [1, 64]))
    assert response.status_code == 504 and "serve.timeout_ms" in response.json()["error"]
    tiny = start(settings_for(digits_run, max_queue=1))
    response = tiny.client.post("/v2/models/digits/infer", json=v2(ROW * 2, [2, 64]))
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
