#!/usr/bin/env bash
# Puts ONNX Runtime's shared library where `.cargo/config.toml` points `ORT_DYLIB_PATH`
# (target/onnxruntime/), taking it out of the official PyPI wheel. Does nothing when it is there.
#
# `ort` is built with `load-dynamic`: nothing is downloaded at build time, and a missing library
# is a typed error at run time (the `auto` backend then uses our own CPU path). The library does
# not depend on Python; pip is only the downloader.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.31.1
DIR=target/onnxruntime
LIB="$DIR/libonnxruntime.so.$VERSION"
[ -f "$LIB" ] && exit 0
mkdir -p "$DIR/wheel"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --python-version 3.11 "onnxruntime==$VERSION" -d "$DIR/wheel"
python3 - "$DIR" "$VERSION" <<'PY'
import glob, sys, zipfile
out, version = sys.argv[1], sys.argv[2]
wheel = glob.glob(f"{out}/wheel/onnxruntime-{version}-*.whl")[0]
name = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as z, open(f"{out}/libonnxruntime.so.{version}", "wb") as f:
    f.write(z.read(name))
PY
rm -rf "$DIR/wheel"
echo "ONNX Runtime $VERSION: $LIB"
