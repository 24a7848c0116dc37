#!/usr/bin/env bash
# Rewrite constraints.txt from a fresh resolution: a temporary venv gets `pip install -e '.[dev]'`
# without constraints (the newest versions pyproject.toml's ranges allow), and scripts/pins.py
# writes every distribution the project requires, transitively, at the version pip installed.
# Usage: scripts/pin-dependencies.sh [OUTPUT]   (default: constraints.txt; `make pins` runs it)
# Run `make test` afterwards, and commit constraints.txt with whatever the new versions needed.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/constraints.txt}")"
python="${PYTHON:-python3}"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/portal-pins-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "resolving $root[dev] in a fresh venv ($("$python" --version)) ..."
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$tmp/venv/bin/pip" install --quiet --disable-pip-version-check -e "$root[dev]"
"$tmp/venv/bin/pip" check
"$tmp/venv/bin/python" "$root/scripts/pins.py" "$out"
