"""Writes the Parquet lookup tables tests/lookup.rs reads (pyarrow: the library the teams who
build these tables write them with): integer keys with float64, int32 and float32 fields and
a null, and a timestamp column; text keys; and files that must be refused: a text field, a duplicated key, a null key.
"""
import sys

import pyarrow as pa
import pyarrow.parquet as pq

d = sys.argv[1]
pq.write_table(pa.table({
    "card": pa.array([1, 2, 7], pa.int64()),
    "limit": pa.array([500.0, 1000.0, 250.5], pa.float64()),
    "age": pa.array([30, None, 61], pa.int32()),
    "score": pa.array([0.25, 0.5, None], pa.float32()),
    "updated": pa.array([1000, None, 3], pa.int64()),
}), f"{d}/cards.parquet")
# Several row groups and a dictionary-encoded text key.
pq.write_table(pa.table({
    "code": pa.array(["fr", "de"]).dictionary_encode().cast(pa.string()),
    "tax": pa.array([0.2, 0.19]),
}), f"{d}/countries.parquet", row_group_size=1)
pq.write_table(pa.table({"card": [1], "limit": ["high"]}), f"{d}/text_field.parquet")
pq.write_table(pa.table({"card": [1, 1], "limit": [1.0, 2.0]}), f"{d}/twice.parquet")
pq.write_table(pa.table({"card": pa.array([1, None], pa.int64()), "limit": [1.0, 2.0]}),
               f"{d}/null_key.parquet")
