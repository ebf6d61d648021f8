#!/usr/bin/env bash
# Installs the Debian packages the test suite needs: chromium for the browser tests.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "system-deps: /usr/bin/chromium is missing; install Debian's 'chromium' package" >&2
    exit 1
fi
echo "system-deps: installing chromium (Debian package) for the browser tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
