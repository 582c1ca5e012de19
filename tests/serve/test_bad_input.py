"""Every caller mistake gets a 4xx with {"error": ...} that names what was wrong; never a 500.

The hostile corpus: deep nesting, huge numbers, duplicate keys and columns, lying shapes and
lengths, parameters of the wrong type, text and true/false where numbers belong, CSV rows wider
than their header, invalid UTF-8, NaN literals, wrong content types."""

import json

import numpy as np
import pytest

from tests.serve.conftest import raw_request, settings_for

pytestmark = pytest.mark.slow
ROW = [0.0] * 64
HEADER = ",".join(f"pixel_{i}" for i in range(64))


def v2(data, shape, datatype="FP64", name="input", **extra):
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data, **extra}]}


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v2/models/digits/infer", v2(ROW[:10], [1, 10]), 400, "shape [rows, 64]"),
        ("/v2/models/digits/infer", v2(ROW, [1, 63]), 400, "needs 63 values"),
        ("/v2/models/digits/infer", v2(["a"] * 64, [1, 64], "BYTES"), 400, "takes numbers"),
        ("/v2/models/digits/infer", v2(["x"] * 64, [1, 64]), 400, "holds text"),
        # numeric text after real numbers is still text (the one-pass float parse must not convert it)
        ("/v2/models/digits/infer", v2([*ROW[:63], "2.5"], [1, 64]), 400, "holds text"),
        ("/v2/models/digits/infer", v2([[*ROW[:32], *["1"] * 32]], [1, 64]), 400, "holds text"),
        ("/invocations", {"instances": [[*ROW[:63], "2.5"]]}, 400, "must hold numbers; row 0 holds '2.5'"),
        ("/v2/models/digits/infer", v2([True] + ROW[1:], [1, 64]), 400, "holds true/false"),
        ("/v2/models/digits/infer", v2([0.5] + ROW[1:], [1, 64], "INT64"), 400, "holds fractions"),
        ("/v2/models/digits/infer", v2([None] + ROW[1:], [1, 64]), 400, "NaN (missing) and infinity"),
        ("/v2/models/digits/infer", v2(ROW, [1, 64], name="pixels"), 400, "unknown input 'pixels'"),
        ("/v2/models/digits/infer", {"inputs": []}, 400, 'non-empty "inputs"'),
        ("/v2/models/digits/infer", v2(ROW, [True, 64]), 400, "non-negative integers"),
        ("/v2/models/digits/infer", v2([], [2**32, 2**32]), 400, "non-negative integers"),
        ("/v2/models/digits/infer", v2([], [1] * 10_000), 400, "list of 1 or 2"),
        ("/v2/models/digits/infer", v2([[1, 2], [3]], [2, 2]), 400, "not a regular array"),
        ("/v2/models/digits/infer", {**v2(ROW, [1, 64]), "parameters": [1]}, 400, '"parameters" must be an object'),
        ("/v2/models/digits/infer", v2(ROW, [1, 64], parameters=7), 400, 'parameters" must be an object'),
        (
            "/v2/models/digits/infer",
            {**v2(ROW, [1, 64]), "outputs": [{"name": "predict", "parameters": "x"}]},
            400,
            "must be an object",
        ),  # fmt: skip
        ("/v2/models/digits/infer", {**v2(ROW, [1, 64]), "outputs": [{"name": "logits"}]}, 400, "unknown output"),
        ("/v2/models/digits/infer", {**v2(ROW, [1, 64]), "outputs": "predict"}, 400, '"outputs" must be a list'),
        ("/v2/models/other/infer", v2(ROW, [1, 64]), 404, "unknown model 'other'"),
        ("/v2/models/digits/versions/9/infer", v2(ROW, [1, 64]), 404, "no served version '9'"),
        ("/invocations", {"dataframe_split": {"columns": ["pixel_0"], "data": [[1]]}}, 400, "missing column"),
        ("/invocations", {"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}, 400, "more than once"),
        (
            "/invocations",
            {"dataframe_split": {"columns": [f"pixel_{i}" for i in range(64)], "data": [ROW[:3]]}},
            400,
            "rows of 64 values",
        ),  # fmt: skip
        (
            "/invocations",
            {"dataframe_records": [{f"pixel_{i}": ("abc" if i == 3 else 0) for i in range(64)}]},
            400,
            "column 'pixel_3' must hold numbers",
        ),  # fmt: skip
        ("/invocations", {"instances": [["1.5"] * 64]}, 400, "must hold numbers; row 0 holds '1.5'"),
        ("/invocations", {"instances": [[True] + ROW[1:]]}, 400, "must hold numbers; row 0 holds True"),
        ("/invocations", {"instances": [[1, 2]]}, 400, "rows of 64 values"),
        ("/invocations", {"instances": [ROW], "inputs": [ROW]}, 400, "exactly one of"),
        ("/invocations", [1, 2, 3], 400, "must be an object"),
        ("/invocations", {"instances": []}, 400, "no rows"),
    ],
)
def test_bad_requests(server, path, body, status, words):
    response = server.client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert words in response.json()["error"], response.json()


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        (b"[" * 100_000, "application/json", "depth limit"),
        (b'{"inputs":' + b"[" * 100_000, "application/json", "depth limit"),
        (b'{"instances": [[' + b"1" * 400 + b"]]}", "application/json", "infinity"),
        (b'{"instances": [[NaN' + b",0" * 63 + b"]]}", "application/json", "send null"),
        (b'{"instances": [[Infinity' + b",0" * 63 + b"]]}", "application/json", "not valid JSON"),
        (b'{"instances": [[0]], "instances": [[1]]}', "application/json", "repeats the key 'instances'"),
        (b'{"instances": [[{"a": 1, "a": 2}]]}', "application/json", "repeats the key 'a'"),  # under a list
        (b"\xff\xfe{}", "application/json", "not valid UTF-8"),
        (b"{nope", "application/json", "not valid JSON"),
        ((HEADER + "\n" + ",".join(["0"] * 65) + "\n").encode(), "text/csv", "Expected 64 columns, got 65"),
        ((HEADER + "\n" + "1" * 400 + "," + ",".join(["0"] * 63) + "\n").encode(), "text/csv", "infinity"),
        ((HEADER + ",pixel_0\n" + ",".join(["0"] * 65) + "\n").encode(), "text/csv", "more than once"),
        ((HEADER + "\n" + "abc," + ",".join(["0"] * 63) + "\n").encode(), "text/csv", "must hold numbers"),
        (b"\xff" + HEADER.encode() + b"\n0\n", "text/csv", "not UTF-8"),
        (b"a,b\n1", "text/plain", "Content-Type must be"),
    ],
)
def test_hostile_bodies_are_4xx(server, body, content_type, words):
    response = server.client.post("/invocations", content=body, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500, response.text
    assert words in response.json()["error"], response.json()


def test_malformed_bodies_paths_methods_and_lengths(server):
    c = server.client
    assert c.post("/v2/models/digits/infer", content=b"{}", headers={"inference-header-content-length": "99"}
                  ).status_code == 400  # fmt: skip
    assert c.get("/nowhere").status_code == 404 and "error" in c.get("/nowhere").json()
    assert c.get("/invocations").status_code == 405
    assert c.get("/v2/models/digits/infer").status_code == 405
    big = b"0" * (17 * 2**20)
    response = c.post("/invocations", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["error"]
    lying = raw_request(server.port, b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                                     b"content-length: abc\r\nconnection: close\r\n\r\n{}")  # fmt: skip
    assert lying.startswith(b"HTTP/1.1 400"), lying[:100]
    longer = raw_request(server.port, b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                                      b"content-length: 50\r\n\r\n{}", timeout=3)  # fmt: skip
    assert not longer.startswith(b"HTTP/1.1 5")  # the client went away: nothing, or a 4xx
    binary = v2(None, [1, 64])["inputs"][0]
    del binary["data"]
    binary["parameters"] = {"binary_data_size": 64 * 8}
    header = json.dumps({"inputs": [binary]}).encode()
    short = c.post("/v2/models/digits/infer", content=header + b"\x00" * 100,
                   headers={"inference-header-content-length": str(len(header))})  # fmt: skip
    assert short.status_code == 400 and "ends before" in short.json()["error"]
    assert server.client.get("/v2/health/ready").status_code == 200  # and the server still answers


def test_binary_size_mismatch(server):
    payload = np.zeros((1, 64)).tobytes()
    header = b'{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP64","parameters":{"binary_data_size":100}}]}'
    response = server.client.post("/v2/models/digits/infer", content=header + payload,
                                  headers={"inference-header-content-length": str(len(header))})  # fmt: skip
    assert response.status_code == 400 and "binary_data_size 100" in response.json()["error"]


def test_any_request_size_up_to_the_body_limit(server):
    """A 10,000-row /invocations and a 1,000-row V2 request (max_batch_size 256: split) are answered, in order."""
    rows = np.random.default_rng(0).integers(0, 17, (10_000, 64)).astype(float)
    big = server.client.post("/invocations", json={"instances": rows.tolist()})
    assert big.status_code == 200, big.text[:300]
    small = [server.client.post("/invocations", json={"instances": rows[i : i + 1].tolist()}).json()["predictions"][0]
             for i in range(0, 10_000, 997)]  # fmt: skip
    assert [big.json()["predictions"][i] for i in range(0, 10_000, 997)] == small
    v2_big = server.client.post("/v2/models/digits/infer", json=v2(rows[:1000].ravel().tolist(), [1000, 64]))
    assert v2_big.status_code == 200 and v2_big.json()["outputs"][0]["shape"] == [1000]


def test_4xx_do_not_count_as_a_versions_traffic(server):
    before = server.client.get("/metrics").text
    for _ in range(5):
        server.client.post("/v2/models/digits/versions/1/infer", json=v2(["x"] * 64, [1, 64]))
        server.client.post("/v2/models/made-up-model/infer", json=v2(ROW, [1, 64]))
    metrics = server.client.get("/metrics").text
    assert 'status="400",version="1"' not in metrics
    assert 'model="made-up-model"' not in metrics and 'model="unknown"' in metrics
    assert len(metrics) < len(before) + 2000  # a scan of made-up names adds no series


def test_timeout_is_504_and_full_queue_is_503(digits_run, start):
    slow = start(settings_for(digits_run, timeout_ms=0.001, max_delay_ms=50))
    response = slow.client.post("/v2/models/digits/infer", json=v2(ROW, [1, 64]))
    assert response.status_code == 504 and "serve.timeout_ms" in response.json()["error"]
    tiny = start(settings_for(digits_run, max_queue=1))
    response = tiny.client.post("/v2/models/digits/infer", json=v2(ROW * 2, [2, 64]))
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
