#!/usr/bin/env bash
# An S3-compatible server on 127.0.0.1 for the purge tests and benchmark: moto's server (from
# PyPI, in the venv of tests/python/setup.sh) behind a counting proxy (proxy.py) that logs
# every request server-side.
#
#   tests/s3/s3.sh start   prints S3_ENDPOINT=http://127.0.0.1:PORT and S3_REQUEST_LOG=FILE
#   tests/s3/s3.sh stop    idempotent
#
# Environment: S3_DIR state dir (default /tmp/polaris-bridge-s3; wiped by start).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
S3_DIR="${S3_DIR:-/tmp/polaris-bridge-s3}"
log() { echo "s3.sh: $*" >&2; }

stop() {
	local f pid
	for f in proxy.pid moto.pid; do
		[[ -f "$S3_DIR/$f" ]] || continue
		pid="$(cat "$S3_DIR/$f")"
		if kill -0 "$pid" 2>/dev/null && grep -q "$S3_DIR\|moto_server" "/proc/$pid/cmdline" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
		fi
		rm -f "$S3_DIR/$f"
	done
}

start() {
	stop
	local venv ports moto_port proxy_port i
	venv="$("$HERE/../python/setup.sh")"
	rm -rf "$S3_DIR"
	mkdir -p "$S3_DIR"
	ports="$(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')"
	read -r moto_port proxy_port <<<"$ports"
	"$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$S3_DIR/moto.log" 2>&1 &
	echo $! >"$S3_DIR/moto.pid"
	"$venv/bin/python" "$HERE/proxy.py" "$proxy_port" "$moto_port" "$S3_DIR/requests.jsonl" \
		>"$S3_DIR/proxy.log" 2>&1 &
	echo $! >"$S3_DIR/proxy.pid"
	for i in $(seq 1 100); do
		if "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$proxy_port/', timeout=1)" 2>/dev/null; then
			log "moto on :$moto_port behind the counting proxy on :$proxy_port"
			echo "S3_ENDPOINT=http://127.0.0.1:$proxy_port"
			echo "S3_REQUEST_LOG=$S3_DIR/requests.jsonl"
			return 0
		fi
		sleep 0.2
	done
	cat "$S3_DIR"/*.log >&2
	stop
	log "the S3 server did not come up"
	exit 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
	echo "usage: $0 start|stop" >&2
	exit 64
	;;
esac
