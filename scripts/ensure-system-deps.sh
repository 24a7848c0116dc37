#!/usr/bin/env bash
# Make sure the programs the tests drive for real are installed: PostgreSQL server binaries,
# nginx, Chromium and libmagic. As root on Debian/Ubuntu they are installed with apt-get;
# otherwise the script says exactly what to install and fails.
set -euo pipefail

missing=()
have_pg_server() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null \
    || { command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; }
}
have_pg_server || missing+=(postgresql)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/bin/chromium ] || missing+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1' || missing+=(libmagic1)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts nginx on install; the tests run their own.
  if command -v systemctl >/dev/null; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
  [ -f /run/nginx.pid ] && kill "$(cat /run/nginx.pid)" 2>/dev/null || true
  exit 0
fi
echo "The tests need these packages, which are not installed: ${missing[*]}" >&2
echo "Install them with: sudo apt-get install ${missing[*]}" >&2
exit 1
