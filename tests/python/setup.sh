#!/usr/bin/env bash
# Creates (once) the Python virtualenv the purge tests and the purge benchmark use:
# pyiceberg (tables to purge), pyarrow, moto's S3 server. Pinned in requirements.txt beside
# this file; cached under $POLARIS_BRIDGE_CACHE/venv-<hash of requirements.txt>.
# Idempotent and safe to run concurrently (flock). Prints the venv's directory on stdout.
#
#   tests/python/setup.sh           -> /root/.cache/polaris-bridge/venv-1a2b3c4d5e6f
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${POLARIS_BRIDGE_CACHE:-$HOME/.cache/polaris-bridge}"
PYTHON="${PYTHON:-python3}"
hash="$(cat "$HERE/requirements.txt" | sha256sum | cut -c1-12)"
VENV="$CACHE_DIR/venv-$hash"

log() { echo "python/setup.sh: $*" >&2; }

mkdir -p "$CACHE_DIR"
if [[ -f "$VENV/.ready" ]]; then
	echo "$VENV"
	exit 0
fi
exec 8>"$CACHE_DIR/venv.lock"
flock 8
if [[ ! -f "$VENV/.ready" ]]; then
	command -v "$PYTHON" >/dev/null || {
		log "python3 not found"
		exit 1
	}
	log "creating $VENV (pyiceberg, pyarrow, moto) from requirements.txt"
	rm -rf "$VENV"
	if ! "$PYTHON" -m venv "$VENV" >&2; then
		log "python3 -m venv failed (on Debian: apt-get install python3-venv)"
		exit 1
	fi
	"$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" >&2
	touch "$VENV/.ready"
fi
flock -u 8
echo "$VENV"
