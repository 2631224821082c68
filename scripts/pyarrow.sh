#!/usr/bin/env bash
# A Python with pyarrow (target/py-venv/), for the audit log's read-back tests (tests/audit.rs):
# the files the runtime writes must open in the library our users read them with. Does nothing
# when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=22.0.0
PY=target/py-venv/bin/python
if [ -x "$PY" ] && "$PY" -c "import pyarrow; assert pyarrow.__version__ == '$VERSION'" 2>/dev/null; then
  exit 0
fi
python3 -m venv target/py-venv
"$PY" -m pip install --quiet "pyarrow==$VERSION"
echo "pyarrow $VERSION: $PY"
