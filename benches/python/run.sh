#!/usr/bin/env bash
# The Python comparison from nothing: the peers' venv and models (benches/peers), a release
# build, the package installed into that venv, then compare.py. Extra arguments go to it.
#   benches/python/run.sh [--models lgb_100x31,airline] [--seconds 1] [--rounds 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/peers-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r benches/peers/requirements.txt
"$venv/bin/python" benches/peers/models.py
cargo build --release -q
"$venv/bin/pip" install -q ./python
"$venv/bin/python" benches/python/compare.py "$@"
