#!/usr/bin/env bash
# River 0.26 against `streamscore drift`: builds the release binary and a venv with River
# (target/river-venv), then runs benches/drift/compare.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin streamscore
if [ ! -x target/river-venv/bin/python ]; then
  python3 -m venv target/river-venv
  target/river-venv/bin/pip install --quiet river==0.26.0
fi
exec target/river-venv/bin/python benches/drift/compare.py "$@"
