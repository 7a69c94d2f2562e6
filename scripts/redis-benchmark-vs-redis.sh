#!/usr/bin/env bash
# redis-benchmark against ditto (a primary and two backups) and against Redis (a primary and two
# replicas) on this machine, one after the other with the same flags, in interleaved rounds:
# SET and INCR at the primary, GET at a backup / replica, each with -P 1 and -P 16. Prints the
# median requests per second of each cell and the ratio ditto / Redis.
#
# Redis's SET is acknowledged before its replicas have it; ditto's only once both backups do.
#
#   scripts/redis-benchmark-vs-redis.sh [ROUNDS] [REQUESTS]
#   DITTO=target/release/ditto BASE_PORT=17000 CLIENTS=50 scripts/redis-benchmark-vs-redis.sh
#
# Needs redis-server and redis-benchmark (Debian: apt-get install redis-server redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-3}
REQUESTS=${2:-100000}
CLIENTS=${CLIENTS:-50}
DITTO=${DITTO:-target/release/ditto}
BASE=${BASE_PORT:-17000}
for tool in redis-server redis-benchmark redis-cli; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install redis-server redis-tools)" >&2; exit 1; }
done
[[ -x $DITTO ]] || cargo build --release --quiet
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

d0=$BASE; d1=$((BASE + 1)); d2=$((BASE + 2))
r0=$((BASE + 10)); r1=$((BASE + 11)); r2=$((BASE + 12))

"$DITTO" primary "$d0" 2>"$work/d0.log" & pids+=($!)
sleep 0.3
"$DITTO" backup "$d1" "$d0" 2>"$work/d1.log" & pids+=($!)
"$DITTO" backup "$d2" "$d0" 2>"$work/d2.log" & pids+=($!)
redis() { redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --daemonize no "${@:2}" >"$work/r$1.log" 2>&1 & pids+=($!); }
redis "$r0"
redis "$r1" --replicaof 127.0.0.1 "$r0"
redis "$r2" --replicaof 127.0.0.1 "$r0"

wait_for() { # port, expected text in INFO replication
    for _ in $(seq 100); do
        redis-cli -p "$1" info replication 2>/dev/null | grep -q "$2" && return 0
        sleep 0.1
    done
    echo "port $1 never showed $2" >&2; exit 1
}
wait_for "$d0" connected_slaves:2
wait_for "$r0" connected_slaves:2

# One figure: requests per second of `redis-benchmark -t TEST -P PIPE` at PORT.
run() {
    redis-benchmark -p "$1" -t "$2" -P "$3" -c "$CLIENTS" -n "$REQUESTS" -q --csv 2>/dev/null \
        | awk -F'"' 'NR>1 || $2!="test" {print $4; exit}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

cells=("set 1 p" "set 16 p" "get 1 b" "get 16 b" "incr 1 p" "incr 16 p")
for ((round = 1; round <= ROUNDS; round++)); do
    for cell in "${cells[@]}"; do
        read -r test pipe where <<<"$cell"
        if [[ $where == p ]]; then dp=$d0 rp=$r0; else dp=$d1 rp=$r1; fi
        run "$dp" "$test" "$pipe" >>"$work/ditto-$test-$pipe"
        run "$rp" "$test" "$pipe" >>"$work/redis-$test-$pipe"
    done
done

printf '%-28s %14s %14s %7s\n' "test ($CLIENTS clients, $ROUNDS rounds)" "ditto req/s" "Redis req/s" "ratio"
for cell in "${cells[@]}"; do
    read -r test pipe where <<<"$cell"
    d=$(median <"$work/ditto-$test-$pipe")
    r=$(median <"$work/redis-$test-$pipe")
    at=$([[ $where == p ]] && echo "primary" || echo "backup/replica")
    printf '%-28s %14.0f %14.0f %7.2f\n' "${test^^} -P $pipe at the $at" "$d" "$r" "$(echo "$d / $r" | bc -l)"
done
