"""River 0.26 against `streamscore drift` on the same streams: time per update, one run each.

For every detector, one stream (Gaussian with a mean shift for ADWIN, Page-Hinkley and KSWIN;
Bernoulli errors with a rate change for the binary detectors) is fed to River's detector in a
Python loop and to `streamscore drift --timing` (which times its update loop alone, as the
River side is timed: reading the values and printing indices are outside both clocks). The
detections of both are compared too, so a fast wrong answer cannot pass.

    benches/drift/run.sh            # builds the release binary and the venv, then runs this
"""

import csv
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

if not hasattr(csv.DictReader, "__class_getitem__"):  # River 0.26 on Python 3.11
    csv.DictReader.__class_getitem__ = classmethod(lambda cls, item: cls)

import river  # noqa: E402
from river import drift  # noqa: E402

BIN = pathlib.Path(os.environ.get("STREAMSCORE", "target/release/streamscore"))
N = int(os.environ.get("DRIFT_N", "200000"))
# KSWIN calls SciPy's ks_2samp on every update once its window is full (~100 us in River).
N_KSWIN = int(os.environ.get("DRIFT_N_KSWIN", "20000"))

DETECTORS = [
    ("adwin", drift.ADWIN, {}, False),
    ("page-hinkley", drift.PageHinkley, {}, False),
    ("kswin", drift.KSWIN, {"seed": 42}, False),
    ("ddm", drift.binary.DDM, {}, True),
    ("eddm", drift.binary.EDDM, {}, True),
    ("hddm-a", drift.binary.HDDMA, {}, True),
    ("hddm-w", drift.binary.HDDMW, {}, True),
]


def main():
    rng = np.random.default_rng(7)
    print(f"River {river.__version__}, Python {sys.version.split()[0]}, one run each")
    print(f"{'detector':<13} {'values':>8} {'River ns/value':>15} {'ours ns/value':>14} {'speed-up':>9} detections")
    with tempfile.TemporaryDirectory() as tmp:
        for name, cls, params, binary in DETECTORS:
            n = N_KSWIN if name == "kswin" else N
            half = n // 2
            if binary:
                values = [int(x) for x in rng.random(n) < np.repeat([0.1, 0.3], [half, n - half])]
            else:
                values = [round(float(x), 6) for x in rng.normal(np.repeat([0.0, 1.0], [half, n - half]), 1.0)]
            path = pathlib.Path(tmp) / f"{name}.csv"
            path.write_text("".join(f"{v}\n" for v in values))
            values = [float(v) for v in path.read_text().split()]

            d = cls(**params)
            found = []
            start = time.perf_counter()
            for i, x in enumerate(values):
                d.update(x)
                if d.drift_detected:
                    found.append(i)
            river_ns = (time.perf_counter() - start) * 1e9 / n

            args = [str(BIN), "drift", "--detector", name, "--input", str(path), "--timing"]
            for k, v in params.items():
                args += ["--set", f"{k}={v}"]
            out = subprocess.run(args, capture_output=True, text=True, check=True)
            ours = [int(line) for line in out.stdout.split()]
            ours_ns = float(re.search(r"([0-9.]+) ns per value", out.stderr).group(1))
            same = "same" if ours == found else f"DIFFER (River {len(found)}, ours {len(ours)})"
            print(f"{name:<13} {n:>8} {river_ns:>15.1f} {ours_ns:>14.1f} {river_ns / ours_ns:>8.0f}x {len(found)} {same}")
            if ours != found:
                sys.exit(1)


if __name__ == "__main__":
    main()
