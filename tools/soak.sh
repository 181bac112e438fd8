#!/usr/bin/env bash
# Soak test (not run by CI): 30 minutes of mixed traffic against a real `tollgate serve` on 127.0.0.1,
# reporting per window the throughput, latency percentiles and statuses, and the server's memory (RSS),
# open file handles and threads; at the end, the drift between the first and last windows.
#   tools/soak.sh [SECONDS=1800] [CONCURRENCY=8] [WINDOW_SECONDS=60]
# Output goes to stdout and to soak-<time>/ (server log, samples, report). Traffic goes to loopback only
# and stops by itself after SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-1800}; concurrency=${2:-8}; window=${3:-60}
out="soak-$(date +%Y%m%d-%H%M%S)"; mkdir -p "$out"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

dotnet build -c Release src/Tollgate -o "$out/bin" >/dev/null
dotnet build -c Release tools/Soak -o "$out/soak" >/dev/null
tg() { dotnet "$out/bin/tollgate.dll" "$@" --db "sqlite:$out/soak.db"; }

return_url=https://app.example/callback
reuse=$(tg profile create --name soak-reuse --return-url "$return_url" --scope videocentral::reporting)
rotate=$(tg profile create --name soak-rotate --return-url "$return_url" --refresh-policy rotate)
echo 'correct horse battery staple' | tg user create --email soak@example.com --name Soak >/dev/null
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
reuse_id=$(field "$reuse" client_id); reuse_secret=$(field "$reuse" client_secret)
rotate_id=$(field "$rotate" client_id); rotate_secret=$(field "$rotate" client_secret)
codes=()
for _ in $(seq 1 "$((concurrency + 1))"); do codes+=("$(tg code issue --client-id "$rotate_id" --return-url "$return_url" --user soak@example.com)"); done
# The first code goes to the reuse client's chain, so issue one for it at the front.
codes=("$(tg code issue --client-id "$reuse_id" --return-url "$return_url" --user soak@example.com)" "${codes[@]}")
python3 - "$out/setup.json" "$return_url" "$reuse_id" "$reuse_secret" "$rotate_id" "$rotate_secret" "${codes[@]}" <<'PY'
import json, sys
path, url, rid, rsec, oid, osec, *codes = sys.argv[1:]
json.dump({"return_url": url, "reuse_client_id": rid, "reuse_secret": rsec, "rotate_client_id": oid,
           "rotate_secret": osec, "codes": codes}, open(path, "w"))
PY
# The rotate client's codes are redeemed by the rotate workers; the first one (the reuse client's) by the driver.

Tollgate__RateLimits__FailedAuthenticationsPerIpPerMinute=0 Logging__LogLevel__Default=Warning \
  dotnet "$out/bin/tollgate.dll" serve --urls http://127.0.0.1:0 --db "sqlite:$out/soak.db" >"$out/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q 'listening on' "$out/server.log" && break; sleep 0.2; done
url=$(sed -n 's/^tollgate: listening on \([^ ]*\).*/\1/p' "$out/server.log" | head -1)
echo "server pid $server at $url; $seconds s, $concurrency workers, $window s windows; output in $out/"

sample() {
  while kill -0 "$server" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
    fds=$(ls "/proc/$server/fd" | wc -l)
    threads=$(awk '/Threads/ {print $2}' "/proc/$server/status")
    echo "{\"t\":$(date +%s),\"rss_kb\":$rss,\"fds\":$fds,\"threads\":$threads}"
    sleep "$window"
  done
}
sample >"$out/process.jsonl" &
sampler=$!

dotnet "$out/soak/Soak.dll" "$url" "$seconds" "$window" "$concurrency" "$out/setup.json" | tee "$out/windows.jsonl"
kill "$sampler" 2>/dev/null || true
curl -s "$url/metrics" >"$out/metrics.txt" || true

python3 - "$out" <<'PY' | tee "$out/report.txt"
import json, sys
out = sys.argv[1]
w = [json.loads(l) for l in open(f"{out}/windows.jsonl") if l.strip()]
p = [json.loads(l) for l in open(f"{out}/process.jsonl") if l.strip()]
if len(w) < 2 or len(p) < 2:
    sys.exit("not enough windows for a report")
first, last = w[1] if len(w) > 2 else w[0], w[-1]  # the first window includes warm-up
errors = sum(n for win in w for k, n in win["statuses"].items() if k.split(":")[1].startswith("5") or k.startswith("transport"))
print(f"windows: {len(w)}, requests/s first {first['requests_per_s']} last {last['requests_per_s']}")
print(f"p50 ms first {first['p50_ms']} last {last['p50_ms']}; p99 ms first {first['p99_ms']} last {last['p99_ms']} "
      f"(drift x{(last['p99_ms'] / first['p99_ms'] if first['p99_ms'] else 0):.2f})")
print(f"rss MB first {p[1]['rss_kb']/1024:.0f} last {p[-1]['rss_kb']/1024:.0f} max {max(x['rss_kb'] for x in p)/1024:.0f}")
print(f"handles first {p[1]['fds']} last {p[-1]['fds']}; threads first {p[1]['threads']} last {p[-1]['threads']}")
print(f"5xx and transport errors: {errors}")
PY
