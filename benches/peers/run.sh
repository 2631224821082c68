#!/usr/bin/env bash
# The peer comparison, from nothing: a venv with the pinned peers, the models and rows
# (models.py), a release build, then run.py. Extra arguments go to run.py.
#   benches/peers/run.sh [--seconds 2] [--models lgb_100x31] [--json target/peers/results.json]
# Needs ../shared/data beside the repository. Compiled peers are cached in target/peers/cache
# (lleaves needs about 15 minutes for lgb_500x255 the first time).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/peers-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q -r benches/peers/requirements.txt
"$venv/bin/python" benches/peers/models.py
cargo build --release -q
"$venv/bin/python" benches/peers/run.py "$@"
