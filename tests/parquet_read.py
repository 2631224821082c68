"""Reads a table streamscore wrote as Parquet and the same table as CSV with pandas, checks
they hold the same values (floats bit for bit as float32, nulls where CSV fields are empty),
and prints the Parquet file's rows, columns and dtypes as JSON (tests/cli.rs)."""
import json
import sys

import numpy as np
import pandas as pd

parquet, csv = sys.argv[1], sys.argv[2]
p = pd.read_parquet(parquet)
c = pd.read_csv(csv, keep_default_na=False, na_values=[""], dtype=str)
if "--drop-unkeyed" in sys.argv:
    # A feature file's unreadable lines (no key) are in the CSV only.
    c = c[c[c.columns[0]].notna()].reset_index(drop=True)
assert list(p.columns) == list(c.columns), (list(p.columns), list(c.columns))
assert len(p) == len(c), (len(p), len(c))
for name in p.columns:
    got, want = p[name], c[name]
    kind = str(got.dtype)
    if kind == "float32":
        w = want.astype("float64").astype("float32").to_numpy()
        assert np.array_equal(got.to_numpy(), w, equal_nan=True), name
    elif kind in ("float64",):
        w = want.astype("float64").to_numpy()
        assert np.array_equal(got.to_numpy(), w, equal_nan=True), name
    elif kind in ("Int64", "UInt64", "int64", "uint64"):
        assert (got.isna().to_numpy() == want.isna().to_numpy()).all(), name
        m = ~want.isna().to_numpy()
        assert (got[m].astype(str).to_numpy() == want[m].to_numpy()).all(), name
    else:
        g = got.fillna("").map(lambda s: s.replace(",", ";").replace('"', ";").replace("\n", ";"))
        assert (g.to_numpy() == want.fillna("").to_numpy()).all(), name
print(json.dumps({"rows": len(p), "columns": list(p.columns),
                  "dtypes": {k: str(v) for k, v in p.dtypes.items()}}))
