#!/usr/bin/env bash
# Installs the Debian packages polewatch's tests use, if they are missing:
#   chromium - headless browser for the console tests (driven by Playwright)
#   socat    - pty pairs for the serial (Modbus RTU, modem, diagnostics) tests
#   alsa-utils - aplay, for the audio backend's tests (played to ALSA's null device)
#   postgresql - initdb/pg_ctl for a scratch server, for the receiver's PostgreSQL storage tests
#   nginx-light, libnginx-mod-stream - nginx's UDP load balancer, in front of two receivers in
#                the receiver failover test
# Needs root (or sudo). Without either it says what to install and carries on: the tests that need
# a missing package skip with a reason.
set -u
packages=(chromium socat alsa-utils postgresql nginx-light libnginx-mod-stream)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  echo "install-debian-deps: not root and no sudo; please install: ${missing[*]}" >&2
  echo "install-debian-deps: tests needing them will be skipped" >&2
  exit 0
fi
echo "install-debian-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq || echo "install-debian-deps: apt-get update failed" >&2
if ! $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; then
  echo "install-debian-deps: could not install ${missing[*]}; tests needing them will skip" >&2
fi
exit 0
