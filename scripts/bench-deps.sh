#!/usr/bin/env bash
# Installs the Debian package the benchmarks need: wrk, the HTTP load generator the tracking
# figures are measured with.
set -euo pipefail
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "bench-deps: missing Debian packages: ${missing[*]}" >&2
    exit 1
fi
echo "bench-deps: installing ${missing[*]} (Debian packages) for the benchmarks"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
