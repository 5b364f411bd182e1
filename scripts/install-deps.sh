#!/usr/bin/env bash
# install-deps.sh — installs exactly the Debian packages moescope needs to build and test
# (SQLite, PCRE2, cairo, cJSON, OpenSSL libcrypto for SHA-256, utf8proc for Unicode
# normalization, pkg-config). Idempotent: does nothing when all are present.
set -euo pipefail
pkgs=(pkg-config libsqlite3-dev libpcre2-dev libcairo2-dev libcjson-dev libssl-dev libutf8proc-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
