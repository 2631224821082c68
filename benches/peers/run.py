"""Times streamscore against the CPU tree scorers users would otherwise pick, side by side:
same models, same .npy rows, same machine, one run.

Peers: LightGBM and XGBoost predict, lleaves (LLVM-compiled LightGBM), Treelite + TL2cgen
(generated C, compiled with gcc), ONNX Runtime (models converted with onnxmltools). Ours:
`streamscore bench --mode direct` on the same rows. Compiled artefacts are cached in
target/peers/cache; the compile time column is from the run that built them.

Every configuration runs for --seconds; throughput is rows scored / wall time, and at batch 1
the latency column is the median per call (for Python peers it includes the Python call).

Usage (benches/peers/run.sh sets up the venv and models first):
  python benches/peers/run.py [--seconds 2] [--models lgb_500x255,...] [--batches 1,1000,100000]
"""

import argparse
import json
import os
import subprocess
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "target", "peers")
CACHE = os.path.join(DATA, "cache")
BIN = os.path.join(ROOT, "target", "release", "streamscore")
MODELS = {
    "lgb_500x255": "lgb_500x255.txt",
    "lgb_100x31": "lgb_100x31.txt",
    "lgb_1000x15": "lgb_1000x15.txt",
    "lgb_300x63_d6": "lgb_300x63_d6.txt",
    "lgb_cat_200x63": "lgb_cat_200x63.txt",
    "airline": "airline.txt",
    "NYC_taxi": "NYC_taxi.txt",
    "xgb_500_d8": "xgb_500_d8.json",
}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def cached_build(name, build):
    """Runs build(path) once; returns (path, seconds the build took when it ran)."""
    path = os.path.join(CACHE, name)
    meta = path + ".json"
    if not os.path.exists(meta):
        _, secs = timed(lambda: build(path))
        with open(meta, "w") as f:
            json.dump({"build_s": secs}, f)
    with open(meta) as f:
        return path, json.load(f)["build_s"]


def measure(predict, x, batch, seconds):
    """(rows/s, median seconds per call) calling predict on consecutive slices of x."""
    n = len(x)
    slices = [x[i : i + batch] for i in range(0, max(n - batch, 0) + 1, batch)][:64]
    return measure_slices(predict, slices, seconds)


def measure_slices(predict, slices, seconds):
    """(rows/s, median seconds per call) calling predict on each slice in turn."""
    predict(slices[0])  # warm-up
    calls, rows, lat = 0, 0, []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        s = slices[calls % len(slices)]
        t = time.perf_counter()
        predict(s)
        lat.append(time.perf_counter() - t)
        calls += 1
        rows += len(s)
    return rows / (time.perf_counter() - start), float(np.median(lat))


def peers(name, path, lightgbm_model, threads, skip=()):
    """(tool, load seconds, predict(x)) for every peer that can run the model, but those in
    `skip`."""
    out = []
    if lightgbm_model:
        import lightgbm as lgb

        b, secs = timed(lambda: lgb.Booster(model_file=path))
        out.append(("lightgbm", secs, lambda x: b.predict(x, num_threads=threads)))

        import lleaves

        def build_lleaves(p):
            lleaves.Model(model_file=path).compile(cache=p)

        so, secs = cached_build(f"{name}.lleaves.so", build_lleaves)
        m = lleaves.Model(model_file=path)
        m.compile(cache=so)
        out.append(("lleaves", secs, lambda x: m.predict(x, n_jobs=threads)))
    else:
        import xgboost as xgb

        b, secs = timed(lambda: xgb.Booster(model_file=path))
        b.set_param({"nthread": threads})
        out.append(("xgboost", secs, lambda x: b.inplace_predict(x)))

    if "tl2cgen" not in skip:
        out.extend(tl2cgen_peer(name, path, lightgbm_model, threads))
    if "onnxruntime" not in skip:
        out.extend(onnx_peer(name, path, lightgbm_model, threads))
    return out


def tl2cgen_peer(name, path, lightgbm_model, threads):
    import tl2cgen
    import treelite

    def load_treelite():
        if lightgbm_model:
            return treelite.frontend.load_lightgbm_model(path)
        return treelite.frontend.load_xgboost_model(path)

    def build_tl2cgen(p):
        tl2cgen.export_lib(
            load_treelite(), toolchain="gcc", libpath=p, params={"parallel_comp": 2}, nthread=2,
            verbose=False,
        )

    lib, secs = cached_build(f"{name}.tl2cgen.so", build_tl2cgen)
    pred = tl2cgen.Predictor(lib, nthread=threads)
    return [("tl2cgen", secs, lambda x: pred.predict(tl2cgen.DMatrix(x)))]


def onnx_peer(name, path, lightgbm_model, threads):
    import onnxruntime as ort

    def build_onnx(p):
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        n_features = np.load(os.path.join(DATA, name + ".npy"), mmap_mode="r").shape[1]
        types = [("input", FloatTensorType([None, n_features]))]
        if lightgbm_model:
            import lightgbm as lgb

            onx = onnxmltools.convert_lightgbm(lgb.Booster(model_file=path), initial_types=types)
        else:
            import xgboost as xgb

            clf = xgb.XGBClassifier()
            clf.load_model(path)
            onx = onnxmltools.convert_xgboost(clf, initial_types=types)
        with open(p, "wb") as f:
            f.write(onx.SerializeToString())

    onnx_path, secs = cached_build(f"{name}.onnx", build_onnx)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    return [("onnxruntime", secs, lambda x: sess.run(None, {inp: x}))]


def ours(path, rows, batch, threads, seconds):
    cmd = [BIN, "bench", "--model", path, "--input", rows, "--mode", "direct", "--batch",
           str(batch), "--cpu-threads", str(threads), "--duration", str(seconds), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    d = [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]
    return d["rows_per_sec"], d["latency_us"]["p50"] * 1e-6, d["load_ms"] * 1e-3, d["backend"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,1000,100000")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--json", help="also write every measurement to this file")
    ap.add_argument("--skip", default="",
                    help="peers to leave out, e.g. tl2cgen,onnxruntime (TL2cgen's gcc build of "
                         "lgb_500x255 takes tens of minutes on 2 cores)")
    args = ap.parse_args()
    os.makedirs(CACHE, exist_ok=True)
    records = []
    head = f"{'model':<12} {'batch':>6} {'thr':>3}  {'tool':<22} {'rows/s':>12} {'p50/call':>10} {'load/compile':>12}  {'ours / this':>11}"
    print(head)
    print("-" * len(head))
    for name in args.models.split(","):
        path = os.path.join(DATA, MODELS[name])
        rows_path = os.path.join(DATA, name + ".npy")
        x32 = np.load(rows_path)
        for threads in [int(t) for t in args.threads.split(",")]:
            skip = set(filter(None, args.skip.split(",")))
            tools = peers(name, path, not path.endswith(".json"), threads, skip)
            for batch in [int(b) for b in args.batches.split(",")]:
                res = []
                for tool, load_s, predict in tools:
                    # Each peer gets the dtype it is fastest with: float32 for ONNX Runtime and
                    # XGBoost, float64 for LightGBM / lleaves / TL2cgen (what they convert to).
                    x = x32 if tool in ("onnxruntime", "xgboost") else x32.astype(np.float64)
                    rps, lat = measure(predict, x, batch, args.seconds)
                    res.append((tool, rps, lat, load_s))
                rps, lat, load_s, backend = ours(path, rows_path, batch, threads, args.seconds)
                res.append((f"streamscore {backend}", rps, lat, load_s))
                mine = res[-1][1]
                best = max(r[1] for r in res[:-1])
                for tool, rps, lat, load_s in res:
                    ratio = f"{mine / rps:.2f}x" if not tool.startswith("streamscore") else f"{mine / best:.2f}x best"
                    print(f"{name:<12} {batch:>6} {threads:>3}  {tool:<22} {rps:>12,.0f} {lat * 1e6:>8.1f}us {load_s:>11.3f}s  {ratio:>11}")
                    records.append({"model": name, "batch": batch, "threads": threads, "tool": tool,
                                    "rows_per_sec": rps, "p50_call_s": lat, "load_s": load_s})
                print(flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
