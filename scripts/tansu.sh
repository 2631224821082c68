#!/usr/bin/env bash
# tansu 0.6.0 (a Kafka-compatible broker in Rust) with its sqlite storage, for the Kafka
# consumer-group tests (tests/serve_kafka.rs starts its own broker on a random loopback port).
# Built once with cargo (about 6 minutes on 2 cores, 20 on one; 1.7 GB peak memory) and cached
# in ~/.cache/streamscore/tansu; does nothing when the cached binary is there.
set -euo pipefail
ROOT="${STREAMSCORE_CACHE:-$HOME/.cache/streamscore}/tansu"
if [ -x "$ROOT/bin/tansu" ]; then
  echo "$ROOT/bin/tansu"
  exit 0
fi
mkdir -p "$ROOT"
CARGO_TARGET_DIR="$ROOT/build" cargo install tansu@0.6.0 --locked --features dynostore,libsql --root "$ROOT" >&2
rm -rf "$ROOT/build"
echo "$ROOT/bin/tansu"
