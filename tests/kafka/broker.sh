#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, broker+controller in one JVM) on
# 127.0.0.1 for the integration tests. No Docker: the broker's jars come from Maven
# Central through tests/kafka/pom.xml and are cached outside the clone.
#
#   tests/kafka/broker.sh start    fresh state dir, free ports, format, start, wait until
#                                  the broker answers a metadata request; prints
#                                  KAFKA_BOOTSTRAP=127.0.0.1:PORT on stdout (all else on
#                                  stderr), so `eval "$(tests/kafka/broker.sh start)"` works
#   tests/kafka/broker.sh stop     SIGTERM, then SIGKILL after 20 s; idempotent
#   tests/kafka/broker.sh status   prints KAFKA_BOOTSTRAP=... and up/down; exit 0 when up
#   tests/kafka/broker.sh fetch    only download the jars and compile the helper (CI warm-up)
#   tests/kafka/broker.sh smoke [BOOTSTRAP]
#                                  create a topic, produce, consume (classic and KIP-848
#                                  groups), delete it; with the Java client
#   tests/kafka/broker.sh dump BOOTSTRAP TOPIC
#                                  print every record of TOPIC (up to its end offsets) as
#                                  JSON lines, read with the Java client (TopicDump.java):
#                                  an independent reader for the kafka sink's tests
#
# Environment (all optional):
#   BROKER_DIR             state dir: config, data, pid, bootstrap, broker.log
#                          (default /tmp/polaris-bridge-kafka; wiped by `start`)
#   POLARIS_BRIDGE_CACHE   cache root (default ~/.cache/polaris-bridge); jars go to
#                          $POLARIS_BRIDGE_CACHE/kafka-jars, the compiled helper next to it
#   KAFKA_VERSION          override the pom's kafka.version (e.g. 4.4.0)
#   KAFKA_START_TIMEOUT    seconds to wait for readiness (default 90)
#   KAFKA_HEAP_OPTS        default "-Xms256m -Xmx768m"
#   KAFKA_LOG_LEVEL        broker root log level (default INFO)
#   KAFKA_EXTRA_PROPS      extra server.properties lines, appended last (newline-separated)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${POLARIS_BRIDGE_CACHE:-$HOME/.cache/polaris-bridge}"
JAR_DIR="$CACHE_DIR/kafka-jars"
BROKER_DIR="${BROKER_DIR:-/tmp/polaris-bridge-kafka}"
KAFKA_VERSION="${KAFKA_VERSION:-}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=20
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
MARKER=".polaris-bridge-kafka" # marks a state dir this script may wipe
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
JAVAC="${JAVA_HOME:+$JAVA_HOME/bin/}javac"
# Short-lived JVMs (storage tool, readiness check): start fast, stay small.
TOOL_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true)

log() { echo "broker.sh: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# --- jars and helper ------------------------------------------------------------

jar_stamp() {
	echo "$(sha256sum "$HERE/pom.xml" | cut -d' ' -f1) kafka.version=${KAFKA_VERSION:-pom}"
}

# Fills $JAR_DIR with the broker classpath unless it already matches pom.xml.
fetch_jars() {
	local stamp tmp
	stamp="$(jar_stamp)"
	if [[ -f "$JAR_DIR/.stamp" && "$(cat "$JAR_DIR/.stamp")" == "$stamp" ]]; then
		return 0
	fi
	command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
	log "fetching the Kafka broker jars into $JAR_DIR"
	tmp="$JAR_DIR.tmp.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	local args=(-B -q -Dstyle.color=never -f "$HERE/pom.xml" dependency:copy-dependencies
		"-DoutputDirectory=$tmp")
	[[ -n "$KAFKA_VERSION" ]] && args+=("-Dkafka.version=$KAFKA_VERSION")
	# Output goes to a file (Maven 3.8's -q still prints stray colour codes); shown on failure.
	if ! mvn "${args[@]}" >"$tmp.log" 2>&1; then
		cat "$tmp.log" >&2
		rm -rf "$tmp" "$tmp.log"
		die "mvn dependency:copy-dependencies failed"
	fi
	rm -f "$tmp.log"
	ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $tmp"
	echo "$stamp" >"$tmp/.stamp"
	rm -rf "$JAR_DIR"
	mv "$tmp" "$JAR_DIR"
}

# Compiles the Java helpers (*.java here) once per (sources, jars) into the cache; sets
# HELPER_DIR.
compile_helper() {
	local hash tmp
	hash="$(cat "$HERE"/*.java "$JAR_DIR/.stamp" | sha256sum | cut -c1-16)"
	HELPER_DIR="$CACHE_DIR/kafka-check/$hash"
	[[ -f "$HELPER_DIR/KafkaCheck.class" ]] && return 0
	command -v "$JAVAC" >/dev/null || die "javac not found (a JDK 17 is needed)"
	tmp="$HELPER_DIR.tmp.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	"$JAVAC" -nowarn --release 17 -cp "$JAR_DIR/*" -d "$tmp" "$HERE"/*.java >&2 ||
		die "javac of the helpers failed"
	rm -rf "$HELPER_DIR"
	mv "$tmp" "$HELPER_DIR"
}

# Jars and helper, under a lock so concurrent starts don't fetch into each other.
prepare_classpath() {
	mkdir -p "$CACHE_DIR"
	command -v "$JAVA" >/dev/null || die "java not found (Java 17 is needed)"
	exec 9>"$CACHE_DIR/kafka-jars.lock"
	flock 9
	fetch_jars
	compile_helper
	flock -u 9
	exec 9>&-
}

kafka_check() {
	"$JAVA" "${TOOL_JVM_OPTS[@]}" -Dlog4j2.level=ERROR -cp "$HELPER_DIR:$JAR_DIR/*" KafkaCheck "$@"
}

# --- process helpers ------------------------------------------------------------

# True when PID is a live (non-zombie) broker started from this state dir.
is_our_broker() {
	local pid="$1" state cmdline
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo '?')"
	[[ "$state" != Z ]] || return 1
	cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
	[[ "$cmdline" == *"kafka.Kafka $BROKER_DIR/server.properties"* ]]
}

recorded_pid() {
	[[ -f "$BROKER_DIR/pid" ]] && cat "$BROKER_DIR/pid" || true
}

# Stops the broker of $BROKER_DIR if one runs; returns 0 either way.
stop_broker() {
	local pid waited=0
	pid="$(recorded_pid)"
	if [[ -z "$pid" ]] || ! is_our_broker "$pid"; then
		rm -f "$BROKER_DIR/pid"
		return 0
	fi
	log "stopping the broker (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	while is_our_broker "$pid" && ((waited < STOP_TIMEOUT * 5)); do
		sleep 0.2
		waited=$((waited + 1))
	done
	if is_our_broker "$pid"; then
		log "broker did not stop within ${STOP_TIMEOUT} s; SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		waited=0
		while is_our_broker "$pid" && ((waited < 50)); do
			sleep 0.2
			waited=$((waited + 1))
		done
	fi
	is_our_broker "$pid" && die "broker pid $pid is still alive"
	rm -f "$BROKER_DIR/pid"
	log "broker stopped"
}

# Prints two free 127.0.0.1 ports and a random Kafka cluster id (base64url of 16 bytes).
ports_and_cluster_id() {
	python3 - <<'EOF'
import base64, socket, uuid
socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
ports = [s.getsockname()[1] for s in socks]
for s in socks:
    s.close()
cid = "-"
while cid.startswith("-"):
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
print(ports[0], ports[1], cid)
EOF
}

fresh_state_dir() {
	if [[ -e "$BROKER_DIR" ]]; then
		if [[ -f "$BROKER_DIR/$MARKER" ]] || [[ -d "$BROKER_DIR" && -z "$(ls -A "$BROKER_DIR")" ]]; then
			rm -rf "$BROKER_DIR"
		else
			die "$BROKER_DIR exists and was not made by this script; refusing to wipe it"
		fi
	fi
	mkdir -p "$BROKER_DIR/data"
	touch "$BROKER_DIR/$MARKER"
}

write_server_properties() {
	local port="$1" cport="$2"
	cat >"$BROKER_DIR/server.properties" <<EOF
# Written by tests/kafka/broker.sh: single-node KRaft test broker.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$BROKER_DIR/data

num.partitions=4
auto.create.topics.enable=true
delete.topic.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
EOF
	if [[ -n "${KAFKA_EXTRA_PROPS:-}" ]]; then
		printf '\n# KAFKA_EXTRA_PROPS\n%s\n' "$KAFKA_EXTRA_PROPS" >>"$BROKER_DIR/server.properties"
	fi
}

print_log_tail() {
	local f
	for f in "$BROKER_DIR/format.log" "$BROKER_DIR/broker.log" "$BROKER_DIR/ready.log"; do
		[[ -s "$f" ]] || continue
		echo "----- last lines of $f -----" >&2
		tail -n 60 "$f" >&2
	done
	echo "-----" >&2
}

# --- subcommands ----------------------------------------------------------------

cmd_start() {
	local t0=$SECONDS port cport cid pid bootstrap rc picked
	stop_broker # a broker left over from an earlier start of this state dir
	prepare_classpath
	fresh_state_dir
	picked="$(ports_and_cluster_id)" || die "python3 could not pick free ports"
	read -r port cport cid <<<"$picked"
	bootstrap="127.0.0.1:$port"
	write_server_properties "$port" "$cport"

	# Kafka 4.x KRaft with a dynamic quorum (controller.quorum.bootstrap.servers):
	# a single controller formats itself as the whole voter set with --standalone.
	if ! "$JAVA" "${TOOL_JVM_OPTS[@]}" -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
		-Dkafka.log.level=WARN -cp "$JAR_DIR/*" kafka.tools.StorageTool format \
		--standalone --cluster-id "$cid" --config "$BROKER_DIR/server.properties" \
		>"$BROKER_DIR/format.log" 2>&1; then
		print_log_tail
		die "kafka.tools.StorageTool format failed"
	fi

	# shellcheck disable=SC2086 # HEAP_OPTS is a list of JVM flags
	"$JAVA" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
		-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$HERE/log4j2.properties" \
		-Dkafka.log.level="${KAFKA_LOG_LEVEL:-INFO}" \
		-cp "$JAR_DIR/*" kafka.Kafka "$BROKER_DIR/server.properties" \
		</dev/null >"$BROKER_DIR/broker.log" 2>&1 &
	pid=$!
	echo "$pid" >"$BROKER_DIR/pid"
	log "broker pid $pid starting on $bootstrap (controller 127.0.0.1:$cport), log $BROKER_DIR/broker.log"

	rc=0
	kafka_check ready "$bootstrap" "$START_TIMEOUT" "$pid" 2>"$BROKER_DIR/ready.log" || rc=$?
	if ((rc != 0)); then
		print_log_tail
		stop_broker || true
		die "broker did not become ready (KafkaCheck exit $rc)"
	fi
	echo "$bootstrap" >"$BROKER_DIR/bootstrap"
	log "broker ready on $bootstrap after $((SECONDS - t0)) s"
	echo "KAFKA_BOOTSTRAP=$bootstrap"
}

cmd_stop() {
	local pid
	pid="$(recorded_pid)"
	if [[ -z "$pid" ]] || ! is_our_broker "$pid"; then
		log "no broker running for $BROKER_DIR"
	fi
	stop_broker
}

cmd_status() {
	local pid bootstrap
	pid="$(recorded_pid)"
	bootstrap="$(cat "$BROKER_DIR/bootstrap" 2>/dev/null || true)"
	echo "KAFKA_BOOTSTRAP=$bootstrap"
	if [[ -z "$pid" ]] || ! is_our_broker "$pid"; then
		echo "status: down"
		return 1
	fi
	prepare_classpath
	if [[ -n "$bootstrap" ]] && kafka_check ready "$bootstrap" 5 "$pid" 2>/dev/null; then
		echo "status: up (pid $pid)"
		return 0
	fi
	echo "status: process $pid runs but the broker does not answer"
	return 1
}

cmd_smoke() {
	local bootstrap="${1:-${KAFKA_BOOTSTRAP:-}}"
	[[ -n "$bootstrap" ]] || bootstrap="$(cat "$BROKER_DIR/bootstrap" 2>/dev/null || true)"
	[[ -n "$bootstrap" ]] || die "no bootstrap: pass one, set KAFKA_BOOTSTRAP or start a broker"
	prepare_classpath
	kafka_check smoke "$bootstrap"
}

cmd_dump() {
	[[ -n "${1:-}" && -n "${2:-}" ]] || die "usage: $0 dump BOOTSTRAP TOPIC"
	prepare_classpath
	"$JAVA" "${TOOL_JVM_OPTS[@]}" -Dlog4j2.level=ERROR -cp "$HELPER_DIR:$JAR_DIR/*" TopicDump "$1" "$2"
}

case "${1:-}" in
start) cmd_start ;;
dump) cmd_dump "${2:-}" "${3:-}" ;;
stop) cmd_stop ;;
status) cmd_status ;;
smoke) cmd_smoke "${2:-}" ;;
fetch) prepare_classpath ;;
*)
	echo "usage: $0 start|stop|status|fetch|smoke [BOOTSTRAP]|dump BOOTSTRAP TOPIC" >&2
	exit 64
	;;
esac
