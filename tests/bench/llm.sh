#!/usr/bin/env bash
# LLM client benchmark: 400 chat requests at concurrency 32 against the local
# test server answering after 200 ms (ideal wall time N/C x L = 2.5 s; in whole
# rounds 13 x 0.2 s = 2.6 s, so 1.04 is the floor), plus the same
# with the response cache being filled and replayed. Prints wall/ideal and the
# client's CPU time per request.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
bin=$BUILD/bench/bench_llm
[ -x "$bin" ] || { echo "bench llm: $bin not built (make bench builds it)"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-llm-XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
/usr/bin/python3 tests/servers/openai_server.py --port 0 --port-file "$tmp/port" \
  --latency-ms 200 >"$tmp/server.out" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do [ -s "$tmp/port" ] && break; sleep 0.05; done
[ -s "$tmp/port" ] || { echo "bench llm: test server did not start"; cat "$tmp/server.out"; exit 1; }
port=$(cat "$tmp/port")
"$bin" "http://127.0.0.1:$port/v1" 200 400 32 "$tmp/cache"
