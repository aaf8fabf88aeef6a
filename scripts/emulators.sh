#!/usr/bin/env bash
# Start or stop Google's Firestore and Pub/Sub emulators and fake-gcs-server on
# 127.0.0.1 with free ports, for running `visionstack serve` or tests by hand:
#
#   scripts/emulators.sh start     # then: source .emulators/env
#   scripts/emulators.sh stop
#
# The Go tests start their own emulators (internal/emulator); this script is for people.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.emulators
sdk=/usr/lib/google-cloud-sdk/platform

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() { # name url
	for _ in $(seq 1 300); do
		curl -s -o /dev/null "$2" && { echo "$1 ready at $2"; return 0; }
		sleep 0.3
	done
	echo "FATAL: $1 did not answer at $2; log: $dir/$1.log" >&2
	return 1
}

start_one() { # name port cmd...
	local name=$1 port=$2; shift 2
	setsid "$@" >"$dir/$name.log" 2>&1 &
	echo $! >"$dir/$name.pid"
	wait_for "$name" "http://127.0.0.1:$port/"
}

case "${1:-}" in
start)
	mkdir -p "$dir"
	for f in "$sdk/cloud-firestore-emulator/cloud_firestore_emulator" "$sdk/pubsub-emulator/bin/cloud-pubsub-emulator"; do
		[ -x "$f" ] || { echo "FATAL: $f missing: run scripts/install-deps.sh" >&2; exit 1; }
	done
	fs=$(free_port); ps=$(free_port); gcs=$(free_port)
	start_one firestore "$fs" "$sdk/cloud-firestore-emulator/cloud_firestore_emulator" start --host=127.0.0.1 --port="$fs"
	start_one pubsub "$ps" "$sdk/pubsub-emulator/bin/cloud-pubsub-emulator" --host=127.0.0.1 --port="$ps"
	start_one gcs "$gcs" go run github.com/fsouza/fake-gcs-server@v1.56.1 -scheme http -host 127.0.0.1 -port "$gcs" \
		-external-url "http://127.0.0.1:$gcs" -backend memory
	cat >"$dir/env" <<ENV
export FIRESTORE_EMULATOR_HOST=127.0.0.1:$fs
export PUBSUB_EMULATOR_HOST=127.0.0.1:$ps
export STORAGE_EMULATOR_HOST=http://127.0.0.1:$gcs
ENV
	echo "now: source $dir/env"
	;;
stop)
	for p in "$dir"/*.pid; do
		[ -e "$p" ] || continue
		kill -TERM -- "-$(cat "$p")" 2>/dev/null || true
		rm -f "$p"
	done
	echo "stopped"
	;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
