"""Drives a running `streamscore serve` with clients no one here wrote: tritonclient's HTTP
client (the Open Inference Protocol's reference client) and Python's http.client for the
requests tritonclient will not send (malformed, oversized, lying about sizes).

Run by tests/serve.rs:  python serve_oip.py plain HOST:PORT GOLDEN_DIR MAX_BODY
                        python serve_oip.py keyed HOST:PORT EXAMPLE_DIR [START|restored STOP OUT]
Scores are compared with the training library's predictions committed beside each model
(LightGBM's pred.csv / expected.csv). Exits non-zero on the first failure.
"""

import csv
import http.client
import json
import socket
import sys
import threading

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

REL_TOL = 1e-5


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def close(got, want, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    check(got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}")
    err = np.abs(got - want) / np.maximum(np.abs(want), 1e-6)
    check(err.max() <= REL_TOL, f"{what}: max relative error {err.max():.3g}")


def fails(fn, needle, what):
    try:
        fn()
    except InferenceServerException as e:
        check(needle in str(e), f"{what}: error `{e}` lacks `{needle}`")
        return
    raise AssertionError(f"{what}: no error")


def raw(addr, method, path, body=b"", headers=None):
    host, port = addr.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def error_of(status_body, status):
    got, body = status_body
    check(got == status, f"status {got} != {status}: {body[:200]!r}")
    msg = json.loads(body)["error"]
    check(isinstance(msg, str) and msg, "an error message")
    return msg


def plain(addr, golden, max_body):
    x = np.genfromtxt(f"{golden}/input.csv", delimiter=",", skip_header=1, dtype=np.float32)
    pred = np.genfromtxt(f"{golden}/pred.csv", delimiter=",", dtype=np.float64)
    if pred.ndim == 1:
        pred = pred[:, None]
    n, width = x.shape
    k = pred.shape[1]
    client = httpclient.InferenceServerClient(addr)

    # Health and metadata.
    check(client.is_server_live(), "live")
    check(client.is_server_ready(), "ready")
    check(client.is_model_ready("model"), "model ready")
    check(not client.is_model_ready("nope"), "an unknown model is not ready")
    meta = client.get_server_metadata()
    check(meta["name"] == "streamscore" and "binary_tensor_data" in meta["extensions"], meta)
    mm = client.get_model_metadata("model")
    check(mm["name"] == "model", mm)
    check(mm["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, width]}, mm)
    check(mm["outputs"][0]["shape"] == [-1, k], mm)
    version = mm["versions"][0]
    check(client.get_model_metadata("model", model_version=version)["name"] == "model", "by version")
    cfg = client.get_model_config("model")
    check(cfg["max_batch_size"] > 0 and cfg["input"][0]["dims"] == [width], cfg)

    def infer(rows, binary, request_id="", model_version="", model="model"):
        inp = httpclient.InferInput("input", list(rows.shape), "FP32")
        inp.set_data_from_numpy(rows, binary_data=binary)
        outs = [httpclient.InferRequestedOutput("score", binary_data=binary),
                httpclient.InferRequestedOutput("model_version", binary_data=binary)]
        return client.infer(model, [inp], outputs=outs, request_id=request_id,
                            model_version=model_version)

    # Every row at once, JSON and binary, against LightGBM's predictions.
    for binary in (False, True):
        r = infer(x, binary, request_id=f"all-{binary}")
        close(r.as_numpy("score"), pred, f"batch, binary={binary}")
        check(r.get_response()["id"] == f"all-{binary}", "the id is echoed")
        check(r.get_response()["model_version"] == version, "the version is named")
        check((r.as_numpy("model_version") == int(version)).all(), "per-event versions")
    # Batch 1, row by row, alternating encodings.
    for i in range(0, n, 7):
        r = infer(x[i:i + 1], i % 2 == 0)
        close(r.as_numpy("score"), pred[i:i + 1], f"row {i}")
    # Outputs not asked for are all given; a version in the URL must be the live one.
    inp = httpclient.InferInput("input", [2, width], "FP32")
    inp.set_data_from_numpy(x[:2])
    r = client.infer("model", [inp], model_version=version)
    close(r.as_numpy("score"), pred[:2], "default outputs")
    check(r.as_numpy("model_version") is not None, "model_version output")
    fails(lambda: infer(x[:1], False, model_version="12345"), "no version", "unknown version")

    # Requests the protocol refuses, through tritonclient.
    fails(lambda: infer(x[:, :width - 1].copy(), False), f"expected [n, {width}]", "wrong width")
    bad = httpclient.InferInput("input", [1, width], "FP64")
    bad.set_data_from_numpy(x[:1].astype(np.float64))
    fails(lambda: client.infer("model", [bad]), "FP64 is not taken", "wrong datatype")
    fails(lambda: infer(x[:1], True, model="nope"), "unknown model", "unknown model")
    other = httpclient.InferInput("colour", [1], "FP32")
    other.set_data_from_numpy(np.zeros(1, np.float32))
    fails(lambda: client.infer("model", [other]), "no input `colour`", "unknown input")
    wrong_out = [httpclient.InferRequestedOutput("probabilities")]
    inp = httpclient.InferInput("input", [1, width], "FP32")
    inp.set_data_from_numpy(x[:1])
    fails(lambda: client.infer("model", [inp], outputs=wrong_out), "no output", "unknown output")

    # Requests tritonclient would never send, with a plain HTTP client.
    msg = error_of(raw(addr, "POST", "/v2/models/model/infer", b'{"inputs": [{"name": "in'), 400)
    check("malformed" in msg, msg)
    # A declared length over the limit is refused before any of the body is read. (Sending
    # the body too would race the server closing the connection after its 413.)
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v2/models/model/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: %d\r\n\r\n" % (max_body + 1))
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    check(reply.startswith(b"HTTP/1.1 413"), reply[:100])
    error_of(raw(addr, "GET", "/v2/models/model/infer"), 405)
    error_of(raw(addr, "GET", "/v2/nothing/here"), 404)
    # A binary size that does not match the bytes sent: refused, and the next request on the
    # server gets its own answer, never this one's bytes (Triton #3119, #7171).
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, width], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 4 * width}}]}).encode()
    short = header + x[0].tobytes()[:-4]
    msg = error_of(raw(addr, "POST", "/v2/models/model/infer", short,
                       {"Inference-Header-Content-Length": str(len(header))}), 400)
    check("binary" in msg, msg)
    over = header + x[0].tobytes() + x[1].tobytes()
    msg = error_of(raw(addr, "POST", "/v2/models/model/infer", over,
                       {"Inference-Header-Content-Length": str(len(header))}), 400)
    check("follow" in msg, msg)
    error_of(raw(addr, "POST", "/v2/models/model/infer", header,
                 {"Inference-Header-Content-Length": str(len(header) + 1)}), 400)
    close(infer(x[1:2], True).as_numpy("score"), pred[1:2], "after a refused request")
    # NaN (as Python writes it) and null are missing values, like NaN in binary data.
    nan_json = b'{"inputs":[{"name":"input","shape":[1,%d],"datatype":"FP32","data":[NaN,%s]}]}' % (
        width, b",".join([b"null"] * (width - 1)))
    status, body = raw(addr, "POST", "/v2/models/model/infer", nan_json)
    check(status == 200, body)
    missing = np.full((1, width), np.nan, dtype=np.float32)
    close(json.loads(body)["outputs"][0]["data"], infer(missing, True).as_numpy("score")[0], "NaN")
    check(raw(addr, "GET", "/metrics")[1].startswith(b"#") or b"streamscore_" in raw(addr, "GET", "/metrics")[1],
          "Prometheus text")

    # Concurrent clients each get their own rows' answers.
    errors = []

    def worker(t):
        try:
            c = httpclient.InferenceServerClient(addr)
            for j in range(40):
                i = (t * 41 + j * 13) % n
                inp = httpclient.InferInput("input", [1, width], "FP32")
                inp.set_data_from_numpy(x[i:i + 1], binary_data=j % 2 == 0)
                r = c.infer("model", [inp], request_id=f"{t}-{j}")
                check(r.get_response()["id"] == f"{t}-{j}", "own id")
                close(r.as_numpy("score"), pred[i:i + 1], f"client {t} row {i}")
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    check(not errors, errors[:3])

    # Statistics and the repository: unload makes the model unavailable, load brings it back.
    stats = client.get_inference_statistics("model")["model_stats"][0]
    check(stats["inference_count"] >= 2 * n, stats)
    check(stats["inference_stats"]["success"]["count"] > 0, stats)
    index = client.get_model_repository_index()
    check(index[0]["name"] == "model" and index[0]["state"] == "READY", index)
    client.unload_model("model")
    check(not client.is_model_ready("model"), "unloaded")
    fails(lambda: infer(x[:1], False), "not ready", "infer while unloaded")
    client.load_model("model")
    check(client.is_model_ready("model"), "loaded again")
    close(infer(x[:3], False).as_numpy("score"), pred[:3], "after load")
    print(f"plain: {n} rows x {width}, k={k}: every check passed")


def synthetic(n):
    """A fraud-like stream of n events over n // 10 cards, in time order, the same every run."""
    rng = np.random.default_rng(7)
    cards = rng.integers(0, max(n // 10, 1), n).astype(np.uint64)
    ts = 1_700_000_000_000 + np.cumsum(rng.integers(0, 400, n)).astype(np.int64)
    amount = np.round(rng.lognormal(3.0, 1.0, n), 2).astype(np.float32)
    code = rng.integers(0, 6, n).astype(np.float32)
    return cards, ts, amount, code


def keyed(addr, example, start=0, stop=None, out=None):
    expected = {}
    if example.startswith("synthetic:"):
        cards, ts, amount, code = synthetic(int(example.split(":")[1]))
        per_request = 5000
    else:
        with open(f"{example}/stream.csv") as f:
            rows = list(csv.DictReader(f))
        mcc = ["grocery", "fuel", "restaurant", "travel", "online", "atm"]
        cards = np.array([int(r["card"]) for r in rows], dtype=np.uint64)
        ts = np.array([int(r["ts"]) for r in rows], dtype=np.int64)
        amount = np.array([float(r["amount"]) for r in rows], dtype=np.float32)
        code = np.array([mcc.index(r["mcc"]) for r in rows], dtype=np.float32)
        with open(f"{example}/expected.csv") as f:
            for r in csv.DictReader(f):
                expected[int(r["index"])] = float(r["prediction"])
        per_request = 500
    rows = cards
    client = httpclient.InferenceServerClient(addr)
    mm = client.get_model_metadata("fraud")
    check([i["name"] for i in mm["inputs"]] == ["input", "key", "timestamp_ms"], mm)
    if mm["parameters"]["restored_position"] is not None and start != "restored":
        raise AssertionError(f"restored unexpectedly: {mm['parameters']}")
    if start == "restored":
        # Replay from the position of the checkpoint the server restored.
        start = mm["parameters"]["restored_position"]
        check(isinstance(start, int) and start > 0, mm["parameters"])
    check(mm["parameters"]["feature_position"] == start, mm["parameters"])
    stop = len(rows) if stop is None else stop
    # Without key and time the feature stage cannot run.
    inp = httpclient.InferInput("amount", [1], "FP32")
    inp.set_data_from_numpy(amount[:1])
    fails(lambda: client.infer("fraud", [inp]), "feature stage", "no key")
    # The stream in order, in requests of 500 (5000) events, one tensor per field (binary).
    scores = np.full(len(rows), np.nan, dtype=np.float32)
    for s in range(start, stop, per_request):
        e = slice(s, min(s + per_request, stop))
        tensors = []
        for name, dtype, data in [("key", "UINT64", cards[e]), ("timestamp_ms", "INT64", ts[e]),
                                  ("amount", "FP32", amount[e]), ("mcc", "FP32", code[e])]:
            t = httpclient.InferInput(name, [len(data)], dtype)
            t.set_data_from_numpy(data, binary_data=True)
            tensors.append(t)
        r = client.infer("fraud", tensors, outputs=[httpclient.InferRequestedOutput("score", binary_data=True)])
        scores[e] = r.as_numpy("score")[:, 0]
    idx = np.array([i for i in sorted(expected) if start <= i < stop])
    if len(idx):
        close(scores[idx], np.array([expected[i] for i in idx]), "online features over HTTP vs LightGBM")
    if out:
        scores.tofile(out)
    print(f"keyed: events {start}..{stop} over HTTP, {len(idx)} held-out scores match LightGBM")


if __name__ == "__main__":
    if sys.argv[1] == "plain":
        plain(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        start = sys.argv[4] if len(sys.argv) > 4 else "0"
        start = start if start == "restored" else int(start)
        stop = int(sys.argv[5]) if len(sys.argv) > 5 else None
        keyed(sys.argv[2], sys.argv[3], start, stop, sys.argv[6] if len(sys.argv) > 6 else None)
