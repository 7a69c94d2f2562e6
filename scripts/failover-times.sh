#!/usr/bin/env bash
# Failover times of a local group of three: SIGKILL the primary N times (default 20) and time,
# from each kill, until a write sent to a surviving member is acknowledged. The killed server is
# started again with its own command line and rejoins as a backup before the next kill.
#
#   scripts/failover-times.sh [N]        # DITTO=path/to/ditto, BASE_PORT=27000 to change
#
# Prints one line per kill and the median and worst at the end. Only the processes it started
# are stopped, by PID, when it ends.
set -euo pipefail
n=${1:-20}
bin=${DITTO:-target/release/ditto}
base=${BASE_PORT:-27000}
ports=("$base" "$((base + 1))" "$((base + 2))")
declare -A pid cmd
cmd[${ports[0]}]="primary ${ports[0]}"
cmd[${ports[1]}]="backup ${ports[1]} ${ports[0]}"
cmd[${ports[2]}]="backup ${ports[2]} ${ports[0]}"

start() { "$bin" --log-level error ${cmd[$1]} & pid[$1]=$!; }
stop_all() { for p in "${ports[@]}"; do kill "${pid[$p]}" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop_all EXIT
field() { sed -n "s/.*[: ]$2=\([^ ]*\).*/\1/p" <<<"$1"; }
status() { "$bin" client "$1" STATUS --timeout 0.3 2>/dev/null || true; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# The port whose STATUS says primary with all three members active; waits up to 15 s.
synced_primary() {
    local deadline=$(( $(now_ms) + 15000 ))
    while (( $(now_ms) < deadline )); do
        for p in "${ports[@]}"; do
            local s; s=$(status "$p")
            if [[ $(field "$s" role) == primary ]] && (( $(grep -o ':active:' <<<"$s" | wc -l) == 3 )); then
                echo "$p"; return 0
            fi
        done
        sleep 0.05
    done
    echo "the group did not sync within 15 s" >&2; return 1
}

for p in "${ports[@]}"; do start "$p"; done
times=()
for i in $(seq 1 "$n"); do
    primary=$(synced_primary)
    other=${ports[0]}; [[ $other == "$primary" ]] && other=${ports[1]}
    "$bin" client "$other" "WRITE:$i" --timeout 2 >/dev/null
    t0=$(now_ms)
    kill -9 "${pid[$primary]}"; wait "${pid[$primary]}" 2>/dev/null || true
    until "$bin" client "$other" "WRITE:$((i * 1000))" --timeout 0.5 >/dev/null 2>&1; do
        (( $(now_ms) - t0 < 10000 )) || { echo "no write within 10 s of kill $i" >&2; exit 1; }
    done
    took=$(( $(now_ms) - t0 ))
    times+=("$took")
    echo "kill $i: primary :$primary, a write through :$other succeeded after $took ms"
    start "$primary"
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
echo "failover over $n kills: median ${sorted[$(( (n - 1) / 2 ))]} ms, worst ${sorted[$(( n - 1 ))]} ms"
