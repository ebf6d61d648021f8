#!/usr/bin/env bash
# Installs the Debian packages the test suite needs: chromium for the browser tests, Node.js
# and npm for the local SES emulator.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
command -v npm >/dev/null || missing+=(nodejs npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "system-deps: missing Debian packages: ${missing[*]}" >&2
    exit 1
fi
echo "system-deps: installing ${missing[*]} (Debian packages) for the tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
