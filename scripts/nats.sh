#!/usr/bin/env bash
# Debian's nats-server (2.9), for the NATS JetStream tests (tests/serve_nats.rs starts its own
# server with JetStream on a random loopback port). Does nothing when it is there.
set -euo pipefail
if command -v nats-server >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q nats-server >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q nats-server >/dev/null
}
# The package may start a system service on the default port; the tests do not use it.
($SUDO systemctl disable --now nats-server >/dev/null 2>&1 || $SUDO service nats-server stop >/dev/null 2>&1) || true
nats-server --version
