#!/usr/bin/env bash
# Debian's mosquitto (2.0), for the MQTT test (tests/serve_mqtt.rs starts its own broker on a
# random loopback port with a config of its own). Does nothing when it is there.
set -euo pipefail
PATH="$PATH:/usr/sbin"
if command -v mosquitto >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q mosquitto >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q mosquitto >/dev/null
}
# The package may start a system service on the default port; the test does not use it.
($SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || $SUDO service mosquitto stop >/dev/null 2>&1) || true
command -v mosquitto >/dev/null 2>&1 || ls /usr/sbin/mosquitto
