#!/usr/bin/env bash
# The purge benchmark: files deleted per second and peak memory of `polaris-bridge purge`,
# side by side with pyiceberg's own purge (`catalog.purge_table`) of an identical table in
# the same run, on the local filesystem and on the S3-compatible server (moto behind the
# counting proxy, tests/s3/s3.sh). Not a test. Results: BENCHMARKS.md.
#
#   bench/purge.sh [--files N] [--snapshots S] [--stores local,s3] [--py-files N]
#                  [--s3-files N] [--memory-files N]
#
#   --files N         data files of the local tables (default 100000)
#   --s3-files N      data files of our S3 table (default: --files)
#   --py-files N      data files of pyiceberg's S3 table (default 10000: pyiceberg deletes
#                     one object per request, serially, ~120 files/s on moto)
#   --snapshots S     snapshots (one add of N/S files each; default 20)
#   --no-sync         do not sync the new tables to disk before purging (on this VM's disk,
#                     mounted with online discard, unlinking a synced file costs ~2 ms serially)
#   --memory-files N  also a table of N entries, manifests only (no data files written;
#                     not-found counts as deleted), purged by polaris-bridge alone for its
#                     peak memory (e.g. 1000000)
#
# Peak memory is the process's maximum RSS (/usr/bin/time). Builds the release binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FILES=100000 SNAPSHOTS=20 STORES=local,s3 PY_FILES=10000 S3_FILES="" MEMORY_FILES=0 SYNC=1
while (($#)); do
	case "$1" in
	--files) FILES="$2"; shift 2 ;;
	--snapshots) SNAPSHOTS="$2"; shift 2 ;;
	--stores) STORES="$2"; shift 2 ;;
	--py-files) PY_FILES="$2"; shift 2 ;;
	--s3-files) S3_FILES="$2"; shift 2 ;;
	--memory-files) MEMORY_FILES="$2"; shift 2 ;;
	--no-sync) SYNC=0; shift ;;
	*) echo "unknown argument $1" >&2; exit 64 ;;
	esac
done
S3_FILES="${S3_FILES:-$FILES}"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

cargo build --release --locked --bin polaris-bridge >&2
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/polaris-bridge"
VENV="$(tests/python/setup.sh)"
PY="$VENV/bin/python"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/purge-bench.XXXXXX")"
S3_STARTED=0
cleanup() {
	((S3_STARTED)) && S3_DIR="$WORK/s3" tests/s3/s3.sh stop || true
	rm -rf "$WORK"
}
trap cleanup EXIT

field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d$2)" "$1"; }
count() { # objects under a location
	if [[ "$1" == s3://* ]]; then
		"$PY" - "$1" "$S3_ENDPOINT" <<'PYEOF'
import sys, boto3
b, _, p = sys.argv[1][5:].partition("/")
s3 = boto3.client("s3", endpoint_url=sys.argv[2], region_name="us-east-1")
n = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix=p.rstrip("/") + "/"):
    n += page.get("KeyCount", 0)
print(n)
PYEOF
	else
		find "${1#file://}" -type f 2>/dev/null | wc -l
	fi
}
requests_since() { # server-side requests logged after line $1: "total deletes keys"
	tail -n +"$(($1 + 1))" "$S3_REQUEST_LOG" | python3 -c '
import json, sys
rs = [json.loads(l) for l in sys.stdin if l.strip()]
print(len(rs), sum(1 for r in rs if r["method"] in ("DELETE", "POST") and ("delete" in r["query"] or r["method"] == "DELETE")), sum(r["keys"] for r in rs))'
}

ROWS=()
row() { ROWS+=("$*"); echo "$*" >&2; }

run_store() {
	local store="$1" wh s3args=() cfg=() ours py ours_files py_files n
	if [[ "$store" == s3 ]]; then
		wh="s3://bench-$$/wh"
		s3args=(--s3-endpoint "$S3_ENDPOINT")
		printf '[kafka]\nbootstrap_servers = "127.0.0.1:9"\n[connectors.purge]\ntype = "purge"\n[connectors.purge.s3]\nendpoint = "%s"\n' \
			"$S3_ENDPOINT" >"$WORK/s3.toml"
		cfg=(--config "$WORK/s3.toml")
		n="$S3_FILES"
	else
		wh="file://$WORK/wh"
		mkdir -p "$WORK/wh"
		n="$FILES"
	fi
	echo "== $store: making a table of $n files in $SNAPSHOTS snapshots" >&2
	ours="$("$PY" tests/python/make_tables.py --warehouse "$wh" "${s3args[@]}" --catalog-dir "$WORK" \
		--tables "" --files "$n" --snapshots "$SNAPSHOTS" --fast --name ours | tail -1)"
	local pn="$n"
	[[ "$store" == s3 ]] && pn="$PY_FILES"
	echo "== $store: making pyiceberg's table of $pn files" >&2
	py="$("$PY" tests/python/make_tables.py --warehouse "$wh" "${s3args[@]}" --catalog-dir "$WORK" \
		--tables "" --files "$pn" --snapshots "$SNAPSHOTS" --fast --name py | tail -1)"
	((SYNC)) && sync

	local loc meta before after line0 out secs rss stats reqs
	loc="$(field "$ours" "['location']")"
	meta="$(field "$ours" "['metadata_location']")"
	before="$(count "$loc")"
	line0=0
	[[ "$store" == s3 ]] && line0="$(wc -l <"$S3_REQUEST_LOG")"
	out="$(/usr/bin/time -f 'TIME %e %M' "$BIN" purge --metadata-location "$meta" "${cfg[@]}" 2>&1)"
	echo "$out" | grep -v "^TIME" >&2
	read -r secs rss <<<"$(sed -n 's/^TIME //p' <<<"$out")"
	after="$(count "$loc")"
	reqs="-"
	[[ "$store" == s3 ]] && reqs="$(requests_since "$line0" | awk '{print $1 " requests, " $2 " delete requests"}')"
	row "| $store | polaris-bridge | $before | $secs | $(python3 -c "print(round(($before-$after)/$secs))") | $((rss / 1024)) | $after | $reqs |"

	loc="$(field "$py" "['location']")"
	before="$(count "$loc")"
	[[ "$store" == s3 ]] && line0="$(wc -l <"$S3_REQUEST_LOG")"
	out="$(/usr/bin/time -f 'TIME %e %M' "$PY" bench/purge_pyiceberg.py --catalog-uri "$(field "$py" "['catalog_uri']")" \
		--warehouse "$wh" "${s3args[@]}" --table db.py 2>&1)"
	read -r secs rss <<<"$(sed -n 's/^TIME //p' <<<"$out")"
	after="$(count "$loc")"
	[[ "$store" == s3 ]] && reqs="$(requests_since "$line0" | awk '{print $1 " requests, " $2 " delete requests"}')"
	row "| $store | pyiceberg $(grep -o 'pyiceberg==[0-9.]*' tests/python/requirements.txt | cut -d= -f3) purge_table | $before | $secs | $(python3 -c "print(round(($before-$after)/$secs))") | $((rss / 1024)) | $after | $reqs |"
}

if [[ ",$STORES," == *",s3,"* ]]; then
	eval "$(S3_DIR="$WORK/s3" tests/s3/s3.sh start | sed 's/^/export /')"
	S3_STARTED=1
fi
for store in ${STORES//,/ }; do
	run_store "$store"
done
if ((MEMORY_FILES > 0)); then
	mkdir -p "$WORK/mem"
	echo "== memory: a table of $MEMORY_FILES entries (manifests only)" >&2
	t="$("$PY" tests/python/make_tables.py --warehouse "file://$WORK/mem" --catalog-dir "$WORK" --tables "" \
		--files "$MEMORY_FILES" --snapshots "$SNAPSHOTS" --fast --no-data --name mem | tail -1)"
	out="$(/usr/bin/time -f 'TIME %e %M' "$BIN" purge --metadata-location "$(field "$t" "['metadata_location']")" 2>&1)"
	read -r secs rss <<<"$(sed -n 's/^TIME //p' <<<"$out")"
	files="$(grep -o '"files_deleted":[0-9]*' <<<"$out" | cut -d: -f2)"
	row "| local, manifests only | polaris-bridge | $files entries | $secs | $(python3 -c "print(round($files/$secs))") | $((rss / 1024)) | 0 | - |"
fi

echo
echo "| store | purge | files | seconds | files/s | peak RSS MiB | left | server-side requests |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
