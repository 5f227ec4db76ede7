#!/usr/bin/env bash
# Issue 4, figure 7 (first cut, before the load harness exists): the agent's resident memory
# and CPU while idle and polling, and the stripped binary size. Uses the release binary; starts
# a server and one agent on loopback in a temporary directory; cleans up.
#
#   cargo build --release -p rollgate && bash bench/agent-idle.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
exe=target/release/rollgate
secs=${1:-60}
[ -x "$exe" ] || { echo "build first: cargo build --release -p rollgate" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

"$exe" server --data-dir "$tmp/server" --listen 127.0.0.1:0 >"$tmp/server.log" 2>&1 &
for _ in $(seq 100); do [ -f "$tmp/server/server.url" ] && break; sleep 0.1; done
url=$(cat "$tmp/server/server.url")
token=$(ROLLGATE_DATA_DIR="$tmp/server" "$exe" enroll-token create 2>/dev/null)
"$exe" agent --server "$url" --ca "$tmp/server/ca.pem" --enroll-token "$token" --state-dir "$tmp/agent" \
  --poll-interval 30 >"$tmp/agent.log" 2>&1 &
agent=$!
sleep 3
ticks() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks)
sleep "$secs"
t1=$(ticks)
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")
cp "$exe" "$tmp/rollgate-stripped" && strip "$tmp/rollgate-stripped"
size=$(stat -c %s "$tmp/rollgate-stripped")
cpu=$(awk -v d="$((t1 - t0))" -v hz="$hz" -v s="$secs" 'BEGIN {printf "%.3f", 100 * d / hz / s}')
awk -v k="$rss_kb" 'BEGIN {printf "agent resident memory while idle: %.1f MiB (target <= 10)\n", k / 1024}'
printf 'agent CPU while idle over %s s: %s %% of one core (target <= 0.1)\n' "$secs" "$cpu"
awk -v b="$size" 'BEGIN {printf "stripped rollgate binary: %.1f MiB (server, agent and CLI in one)\n", b / 1048576}'
