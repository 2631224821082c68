"""Reads a streamscore audit directory with pyarrow, as a user would, and prints what it found
as JSON (tests/audit.rs compares it with what the runtime answered).

Closed files (`.arrow`) open through their footer with `pyarrow.ipc.open_file`; an open or
abandoned file (`.arrow.partial`) is read as the IPC stream that follows its 8-byte header, up
to its last whole record batch: a torn tail raises, and is reported, never read.
"""
import json
import sys
from pathlib import Path

import pyarrow as pa


def batches(path):
    """(record batches, torn) of one file."""
    if path.name.endswith(".arrow"):
        with pa.ipc.open_file(path) as f:
            return [f.get_batch(i) for i in range(f.num_record_batches)], False
    out = []
    with open(path, "rb") as raw:
        if raw.read(8)[:6] != b"ARROW1":
            return out, True
        try:
            reader = pa.ipc.open_stream(raw)
        except pa.ArrowInvalid:
            return out, True
        while True:
            try:
                out.append(reader.read_next_batch())
            except StopIteration:
                return out, False
            except (pa.ArrowInvalid, OSError):
                return out, True


def finite(values):
    """A list of floats with NaN as null (JSON has no NaN)."""
    if values is None:
        return None
    return [None if x is None or x != x else x for x in values]


def main(root):
    files, records, schema = [], [], None
    paths = sorted(Path(root).glob("audit-*.arrow*"), key=lambda p: p.name.replace(".partial", ""))
    for path in paths:
        got, torn = batches(path)
        files.append({"name": path.name, "rows": sum(b.num_rows for b in got), "torn": torn})
        for b in got:
            schema = str(b.schema.remove_metadata())
            d = b.to_pydict()
            # Milliseconds since the epoch, exactly (datetime.timestamp() is a float).
            times = b.column("event_time").cast(pa.int64()).to_pylist()
            for i in range(b.num_rows):
                records.append({
                    "key": d["key"][i],
                    "role": "shadow" if d["shadow"][i] else "primary",
                    "status": d["status"][i],
                    "error": d["error"][i],
                    "version": d["model_version"][i],
                    "variant": d["variant"][i],
                    "event_time_ms": times[i],
                    "latency_ns": d["latency_ns"][i],
                    "inputs": finite(d["inputs"][i]),
                    "outputs": finite(d["outputs"][i]),
                })
    json.dump({"files": files, "records": records, "schema": schema}, sys.stdout, default=str)


if __name__ == "__main__":
    main(sys.argv[1])
