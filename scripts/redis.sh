#!/usr/bin/env bash
# Debian's redis-server (7.0), for the Redis lookup tests (tests/lookup.rs starts its own
# server on a random loopback port, nothing persisted). Does nothing when it is there.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q redis-server >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q redis-server >/dev/null
}
# The package starts a system service on the default port; the tests do not use it.
($SUDO systemctl disable --now redis-server >/dev/null 2>&1 || $SUDO service redis-server stop >/dev/null 2>&1) || true
redis-server --version
