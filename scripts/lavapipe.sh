#!/usr/bin/env bash
# Installs a Vulkan loader and Mesa's software Vulkan device (lavapipe) where no Vulkan driver is
# present, so the GPU tests run real shaders on a machine without a GPU. Does nothing when a
# Vulkan ICD is already installed (a real GPU's driver, or lavapipe from an earlier run).
#
# Lavapipe is for correctness only: its timings say nothing about a GPU.
set -euo pipefail
if [ -n "$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null)" ] \
  && ldconfig -p | grep 'libvulkan\.so\.1' >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "lavapipe.sh: no Vulkan driver and no apt-get; install a Vulkan loader and driver" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
echo "lavapipe: $(ls /usr/share/vulkan/icd.d/)"
