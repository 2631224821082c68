#!/usr/bin/env bash
# The tests' Python (target/py-venv/), from PyPI: pyarrow for the audit log's read-back tests
# (tests/audit.rs: the files the runtime writes must open in the library our users read them
# with) and tritonclient's HTTP client for the serve tests (tests/serve.rs: the Open Inference
# Protocol spoken to a client no one here wrote). Does nothing when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYARROW=22.0.0
TRITONCLIENT=2.48.0
PY=target/py-venv/bin/python
if [ -x "$PY" ] && "$PY" -c "
import pyarrow, tritonclient.http, importlib.metadata as m
assert pyarrow.__version__ == '$PYARROW'
assert m.version('tritonclient') == '$TRITONCLIENT'" 2>/dev/null; then
  exit 0
fi
python3 -m venv target/py-venv
"$PY" -m pip install --quiet "pyarrow==$PYARROW" "tritonclient[http]==$TRITONCLIENT"
echo "pyarrow $PYARROW, tritonclient $TRITONCLIENT: $PY"
