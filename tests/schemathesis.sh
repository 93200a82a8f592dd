#!/usr/bin/env bash
# Installs schemathesis (PyPI) into a venv cached under $POLARIS_BRIDGE_CACHE (default
# ~/.cache/polaris-bridge) and prints the path of its `schemathesis` executable on stdout.
# tests/run.sh exports it as SCHEMATHESIS for tests/openapi.rs, which runs it against a live
# bridge and fails the suite on any 5xx or schema violation.
#
#   tests/schemathesis.sh          install if needed, print the executable's path
set -euo pipefail

VERSION="4.32.5"
CACHE_DIR="${POLARIS_BRIDGE_CACHE:-$HOME/.cache/polaris-bridge}"

log() { echo "schemathesis.sh: $*" >&2; }

# Python 3.12 or newer when there is one: under 3.11, hypothesis's lambda descriptions can hit
# CPython's "AST constructor recursion depth mismatch" bug and abort a schemathesis phase.
PYTHON=""
candidates=(python3.13 python3.12)
if command -v pyenv >/dev/null 2>&1; then
	for v in "$(pyenv root)"/versions/3.1[2-9]*/bin/python3; do
		[[ -x "$v" ]] && candidates+=("$v")
	done
fi
candidates+=(python3)
for candidate in "${candidates[@]}"; do
	if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import venv' >/dev/null 2>&1; then
		PYTHON="$candidate"
		break
	fi
done
[[ -n "$PYTHON" ]] || {
	log "python3 (with venv) not found"
	exit 1
}
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
VENV="$CACHE_DIR/schemathesis-$VERSION-py$PYVER"
BIN="$VENV/bin/schemathesis"

if [[ -x "$BIN" ]] && "$BIN" --version 2>/dev/null | grep -q "$VERSION"; then
	echo "$BIN"
	exit 0
fi
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/schemathesis.lock"
flock 9
if ! [[ -x "$BIN" ]] || ! "$BIN" --version 2>/dev/null | grep -q "$VERSION"; then
	log "installing schemathesis $VERSION into $VENV (Python $PYVER)"
	rm -rf "$VENV"
	"$PYTHON" -m venv "$VENV" >&2
	"$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
fi
"$BIN" --version >&2
echo "$BIN"
