#!/usr/bin/env bash
# Install what pullprint needs to run and to be tested, idempotently: Debian packages (only those
# missing) and a virtualenv built on Debian's python3 (CUPS runs our filter as the user lp, who must
# be able to execute the interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
APT_PACKAGES=(
  cups cups-client cups-bsd cups-ipp-utils cups-filters ghostscript qpdf poppler-utils
  libcups2-dev avahi-daemon avahi-utils dbus iproute2 socat python3 python3-venv python3-dev gcc make
  postgresql snmpd snmp slapd ldap-utils chromium chromium-driver
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: Debian packages are missing and this is not root: run as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=/usr/bin/python3
stamp="$VENV/.pullprint-deps"
if [ ! -x "$VENV/bin/python" ] || [ "$(readlink -f "$VENV/bin/python")" != "$(readlink -f "$PYTHON")" ]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e '.[test]'
  touch "$stamp"
fi
