#!/usr/bin/env bash
# The tests' Python (target/py-venv/), from PyPI: pyarrow for the audit log's read-back tests
# (tests/audit.rs: the files the runtime writes must open in the library our users read them
# with), tritonclient's HTTP client for the serve tests (tests/serve.rs: the Open Inference
# Protocol spoken to a client no one here wrote), and pytest, pandas and Bytewax for the
# Python package's tests (python/tests; the package itself is built by `pip install ./python`).
# numpy stays below 2: tritonclient 2.48 requires it. Does nothing when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYARROW=22.0.0
TRITONCLIENT=2.48.0
NUMPY=1.26.4
PANDAS=2.2.3
PYTEST=9.2.0
BYTEWAX=0.21.1
PY=target/py-venv/bin/python
if [ -x "$PY" ] && "$PY" -c "
import pyarrow, tritonclient.http, numpy, pandas, pytest, bytewax, importlib.metadata as m
assert pyarrow.__version__ == '$PYARROW'
assert m.version('tritonclient') == '$TRITONCLIENT'
assert (numpy.__version__, pandas.__version__, pytest.__version__) == ('$NUMPY', '$PANDAS', '$PYTEST')
assert m.version('bytewax') == '$BYTEWAX'" 2>/dev/null; then
  exit 0
fi
[ -x "$PY" ] || python3 -m venv target/py-venv
"$PY" -m pip install --quiet "pyarrow==$PYARROW" "tritonclient[http]==$TRITONCLIENT" \
  "numpy==$NUMPY" "pandas==$PANDAS" "pytest==$PYTEST" "bytewax==$BYTEWAX"
echo "pyarrow $PYARROW, tritonclient $TRITONCLIENT, numpy $NUMPY, pandas $PANDAS, pytest $PYTEST, bytewax $BYTEWAX: $PY"
