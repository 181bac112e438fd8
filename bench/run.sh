#!/usr/bin/env bash
# Tollgate's benchmark: builds Release, starts a ceiling server and `tollgate serve` on a fresh SQLite
# database (full sync, as in production) or a fresh PostgreSQL database, seeds it, runs every scenario of
# the performance issue with one load tool, and prints a table with each result's ratio to the ceiling
# measured in the same run, just before and just after it.
#
#   bench/run.sh [--smoke] [-d SECONDS] [--conc "1 4 16 64 256"] [--sizes "0 10000 100000 1000000"]
#                [--rounds N] [--soak SECONDS] [--out DIR] [--postgres CONNECTION-STRING] [--nodes N]
#
#   --smoke     a short run that only proves everything works (CI runs it; its numbers mean nothing)
#   --rounds    measure the 16-connection grants group N times (every result against its own bracketing ceilings), and add
#               the median ratio over the rounds (with the lowest and highest) to the table: on a shared
#               machine one round's ratio can be off by a third (default 1; 2 with --smoke, to exercise it)
#   --soak      after the table, refresh at 16 connections for SECONDS and report RSS over that time
#   --out       where results.tsv, rss.tsv, disk.txt and the logs go (default: a new directory under /tmp)
#   --postgres  use this PostgreSQL server instead of SQLite: the script creates a scratch database
#               named tollgate_bench_<random> on it (the connection string's Database is only used to
#               log in) and drops it on exit; an existing database is never touched
#   --nodes     start N `tollgate serve` processes on the one database; the load tool spreads its
#               connections over them round-robin (worker i talks to node i mod N), as a balancer would
#
# Scenarios (16 connections unless said otherwise): refresh under the reuse and the rotate policy,
# client_credentials, authorization_code exchange, tokeninfo; reuse and rotate from 1 to 256
# connections; every grant again as the store grows to 1,000,000 live refresh tokens and
# 1,000 security profiles (on a second fresh store and server, so that its first point is an empty store and
# not what the earlier scenarios left); the server's RSS sampled every second throughout.
# Before any of it, on SQLite, it times 1,000 durable commits one at a time on the disk under --out
# (`Tollgate.Benchmarks disk`) and prints their p50 and p99 above the table: the floor under a durable answer.
# Everything binds to 127.0.0.1 on ports the OS picks; every process started here is stopped on exit.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"

smoke=0; dur=10; conc_list="1 4 16 64 256"; sizes="0 10000 100000 1000000"; soak=0; out=""; postgres=""; nodes=1; rounds=""
while [ $# -gt 0 ]; do case "$1" in
  --smoke) smoke=1; shift;;
  -d) dur=$2; shift 2;;
  --conc) conc_list=$2; shift 2;;
  --sizes) sizes=$2; shift 2;;
  --soak) soak=$2; shift 2;;
  --out) out=$2; shift 2;;
  --postgres) postgres=$2; shift 2;;
  --nodes) nodes=$2; shift 2;;
  --rounds) rounds=$2; shift 2;;
  *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2;; esac; done
if [ $smoke = 1 ]; then dur=1; conc_list="1 8"; sizes="0 2000"; soak=0; rounds=${rounds:-2}; fi
rounds=${rounds:-1}
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds takes a positive whole number, not '$rounds'" >&2; exit 2; }
warmup=$(awk -v d="$dur" 'BEGIN { w = d / 5; if (w > 2) w = 2; printf "%.1f", w }')
out=${out:-$(mktemp -d /tmp/tollgate-bench.XXXXXX)}
mkdir -p "$out"
results="$out/results.tsv"; rss="$out/rss.tsv"
printf 'group\tscenario\tsystem\tconc\tstore\trps\tp50_ms\tp99_ms\terrors\tround\n' >"$results"
group=grants; round=1
: >"$rss"

pids=(); bench_db=""; scratch_dbs=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  for d in "${scratch_dbs[@]:-}"; do
    if [ -n "$d" ]; then "${seeder[@]}" pg-drop --db "$d" >/dev/null || echo "could not drop the scratch database $d" >&2; fi
  done
}
trap cleanup EXIT; trap 'exit 130' INT TERM

# ---- build (Release, one invocation for all five projects) ----
echo "building Release ..." >&2
if ! dotnet build -c Release "$repo/bench/bench.slnf" >"$out/build.log" 2>&1; then cat "$out/build.log" >&2; exit 1; fi

# Starts "$@" in the background, waits for its "listening on URL" line, sets $url and $pid.
start() {
  local log=$1; shift
  "$@" >"$log" 2>&1 & pid=$!; pids+=("$pid")
  for _ in $(seq 1 300); do
    url=$(sed -nE 's/.*listening on (http:[^ ]+).*/\1/p' "$log" | head -1)
    [ -n "$url" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "no 'listening on' line in $log" >&2; return 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# RSS of the server, one sample a second (seconds since the script started), tagged with the phase running.
phase=idle; t0=$(date +%s)
sample_rss() {
  local p=$1
  while kill -0 "$p" 2>/dev/null; do
    printf '%s\t%s\t%s\n' "$(( $(date +%s) - t0 ))" "$(awk '/VmRSS/ { print $2 }' /proc/"$p"/status 2>/dev/null)" "$(cat "$out/phase" 2>/dev/null)" >>"$rss"
    sleep 1
  done
}
set_phase() { echo "$1" >"$out/phase"; }

# measure SCENARIO SYSTEM CONC STORE: one closed-loop run of SCENARIO (bench/lib.sh's load_run) on SYSTEM (tollgate: the
# server(s) in $srv, with the tokens in $seeds; ceiling: the ceiling, whose scenarios are post and get), appended to results.tsv.
measure() {
  local scenario=$1 system=$2 conc=$3 store=$4
  set_phase "$scenario c=$conc store=$store"
  local line url=$srv tokens=$seeds
  if [ "$system" = ceiling ]; then url=$ceil_url; tokens=$out; fi
  line=$(load_run "$url" "$scenario" "$tokens" "$dur" -c "$conc" --warmup "$warmup" | tr '\n' ' ')
  local rps p50 p99 errs
  rps=$(sed -nE 's/.*rps=([0-9]+).*/\1/p' <<<"$line"); p50=$(sed -nE 's/.*p50_ms=([0-9.naN]+).*/\1/p' <<<"$line")
  p99=$(sed -nE 's/.*p99_ms=([0-9.naN]+).*/\1/p' <<<"$line"); errs=$(sed -nE 's/.*errors=([0-9]+).*/\1/p' <<<"$line")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$group" "$scenario" "$system" "$conc" "$store" "${rps:-0}" "${p50:-nan}" "${p99:-nan}" "${errs:-0}" "$round" >>"$results"
  printf '  %-18s %-8s c=%-4s store=%-8s %s\n' "$scenario" "$system" "$conc" "$store" "$line" >&2
  case "$line" in *first_error*) echo "    ^ errors: see the line above" >&2;; esac
}

max_conc=$(tr ' ' '\n' <<<"$conc_list 16" | sort -n | tail -1)

# bracketed CONC STORE SCENARIO...: each scenario on the server(s) between two measurements of the ceiling at the same
# connections (POST for the grants, GET for tokeninfo), the one after a scenario doubling as the next one's before. The
# table divides each result by the mean of the two. Why: this machine's speed drifts by a third within a minute (one
# round of an earlier run measured its ceiling at 14,076 rps and, 40 s later, client_credentials at 20,495), so a
# ceiling taken once per round said more about that moment than about the workloads that followed it.
bracketed() {
  local conc=$1 store=$2 kind="" k scenario; shift 2
  for scenario in "$@"; do
    k=$([ "$scenario" = tokeninfo ] && echo get || echo post)
    if [ "$k" != "$kind" ]; then measure "$k" ceiling "$conc" "$store"; kind=$k; fi
    measure "$scenario" tollgate "$conc" "$store"
    measure "$k" ceiling "$conc" "$store"
  done
}
# run_every_grant STORE: each grant once at 16 connections on the server(s) in $srv, the store holding STORE seeded
# tokens, each bracketed by the ceiling.
run_every_grant() { bracketed 16 "$1" reuse rotate client_credentials code_exchange tokeninfo; }

# ---- the disk under the SQLite file: the floor under every durable answer, which no table means much without ----
disk_line=""
if [ -z "$postgres" ]; then
  disk_line=$("${seeder[@]}" disk --dir "$out" --commits "$([ $smoke = 1 ] && echo 50 || echo 1000)")
  echo "$disk_line" | tee "$out/disk.txt" >&2
fi

# ---- the ceiling ----
start "$out/ceiling.log" "${ceiling[@]}" --urls http://127.0.0.1:0; ceil_url=$url
ceiling_tokens "$out" "$max_conc"

# ---- a fresh store, and the server(s) on it ----
# fresh_store NAME: a new empty database (SQLite file NAME.db in the output directory, or a scratch PostgreSQL
# database), seeded with the bench's profiles and max_conc refresh tokens per policy in $seeds.
fresh_store() {
  seeds="$out/seeds-$1"
  if [ -n "$postgres" ]; then
    bench_db=$("${seeder[@]}" pg-create --server "postgres:$postgres"); scratch_dbs+=("$bench_db")
  else
    db="$out/$1.db"; rm -f "$db" "$db"-*; bench_db="sqlite:$db"
  fi
  "${seeder[@]}" seed --db "$bench_db" --out "$seeds" --chains "$max_conc" >&2
}

# start_servers NAME: the node(s) on $bench_db; sets $srv (their URLs) and samples the first node's RSS
# (each node is a whole server; the others are alike).
start_servers() {
  srv=""; srv_pids=()
  for n in $(seq 1 "$nodes"); do
    start "$out/$1$([ "$n" = 1 ] || echo "-$n").log" "${tollgate[@]}" serve --urls http://127.0.0.1:0 --db "$bench_db"
    srv=${srv:+$srv,}$url; srv_pids+=("$pid")
  done
  sample_rss "${srv_pids[0]}" & pids+=($!)
}
stop_servers() { for p in "${srv_pids[@]}"; do stop "$p"; done; }

# warm_up PATHS...: an unmeasured pass over each path, for longer than a measurement's own warm-up: .NET's tiered JIT
# recompiles hot methods in the background for several seconds, and a perf profile showed it taking a sixth of the
# CPU 10 s into a cold run.
wd=$([ $smoke = 1 ] && echo 1 || echo 4)
warm_up() {
  set_phase warmup
  local scenario
  for scenario in "$@"; do load_run "$srv" "$scenario" "$seeds" "$wd" -c 16 --warmup 0 >/dev/null; done
}

if [ -n "$postgres" ]; then
  postgres=${postgres#postgres:}
  # Each node keeps its own pool, and PostgreSQL refuses connections past max_connections (100 by default) with
  # 53300: nodes x pool must stay under it (docs/multi-node.md, "Sizing"). Unless the connection string says
  # otherwise, the nodes share 80 connections, leaving room for the seeder, LISTEN and an admin session.
  shopt -s nocasematch
  [[ "$postgres" == *max*pool*size* ]] || postgres="${postgres%;};Maximum Pool Size=$(( 80 / nodes ))"
  shopt -u nocasematch
  store_desc="PostgreSQL (synchronous_commit=on)"
else
  store_desc="durable SQLite, synchronous=FULL"
fi
[ "$nodes" -gt 1 ] && store_desc="$store_desc, $nodes nodes"
fresh_store tollgate
start_servers server

# An unmeasured pass first, so neither server is measured while its JIT is still compiling the path.
set_phase warmup
load_run "$ceil_url" post "$out" 2 -c 16 --warmup 0 >/dev/null
load_run "$ceil_url" get "$out" 1 -c 16 --warmup 0 >/dev/null
warm_up reuse rotate client_credentials tokeninfo code_exchange

echo "1. every grant at 16 connections, empty store (${dur}s each$([ "$rounds" = 1 ] || echo ", $rounds rounds"))" >&2
for round in $(seq 1 "$rounds"); do
  [ "$rounds" = 1 ] || echo " round $round" >&2
  run_every_grant 0
done
round=1

echo "2. connections: $conc_list" >&2
group=connections
for c in $conc_list; do
  bracketed "$c" 0 reuse rotate
done

echo "3. store size: $sizes live refresh tokens (1 profile per 1,000 tokens), on a fresh store" >&2
group=store
# The scenarios above left their grants behind (every code exchange, about 100,000 of them, issued a live refresh
# token): a new store and server, so that the first point really is an empty store.
set_phase idle; stop_servers
if [ -z "$postgres" ]; then rm -f "$db" "$db"-*; fi
fresh_store store-size
start_servers server-store-size
warm_up reuse rotate client_credentials tokeninfo code_exchange
have=0
for size in $sizes; do
  if [ "$size" -gt "$have" ]; then
    set_phase "seeding $size"
    "${seeder[@]}" seed --db "$bench_db" --out "$seeds" --tokens $(( size - have )) --profiles $(( (size - have) / 1000 )) >&2
    have=$size
  fi
  run_every_grant "$size"
done

if [ "$soak" -gt 0 ]; then
  echo "4. soak: reuse refresh at 16 connections for ${soak}s" >&2
  group=soak; saved=$dur; dur=$soak; measure post ceiling 16 "$have"; measure reuse tollgate 16 "$have"; dur=$saved
  measure post ceiling 16 "$have"
fi
set_phase done; sleep 1.5

# ---- the table ----
echo
echo "Tollgate vs the ceiling (the mean of its measurements just before and after each result), same machine, same run, same load tool ($store_desc)"
if [ -n "$disk_line" ]; then
  sed -nE 's/.*p50_ms=([0-9.]+) p99_ms=([0-9.]+).*/disk: one durable commit (synchronous=FULL, one at a time) takes p50 \1 ms, p99 \2 ms here/p' <<<"$disk_line"
fi
awk -F'\t' -v rssfile="$rss" -v rounds="$rounds" '
  NR == 1 { next }
  # Rows come in the order they were measured. A ceiling row is the "after" of every result still waiting on its key
  # (group, POST or GET, connections, store size, round) and the "before" of the results that follow it.
  { key = $1 "|" ($3 == "ceiling" ? $2 : $2 == "tokeninfo" ? "get" : "post") "|" $4 "|" $5 "|" $10 }
  $3 == "ceiling" {
    if (first_post == "" && $2 == "post") first_post = $6
    if (first_get == "" && $2 == "get") first_get = $6
    k = split(pending[key], waiting, " "); for (j = 1; j <= k; j++) after[waiting[j]] = $6
    pending[key] = ""; ceil_now[key] = $6; next
  }
  { rows[++n] = $0; before[n] = ceil_now[key]; pending[key] = pending[key] " " n }
  function target(s) { return s == "reuse" ? 0.70 : s == "rotate" ? 0.50 : s == "client_credentials" ? 0.70 : s == "code_exchange" ? 0.40 : s == "tokeninfo" ? 0.70 : 0 }
  function verdict(s, c, ratio, p99, errors,   t, v) {
    t = target(s); v = ""
    if (c == 16 && t > 0) v = sprintf("%s %.2f%s", ratio >= t ? "meets" : "MISSES", t, p99 <= 5 ? ", p99 ok" : ", p99 > 5 ms")
    return errors > 0 ? v " (" errors " errors)" : v
  }
  # The median of a[1..k], sorting a in place (k is the number of rounds: an insertion sort will do; mawk has no asort).
  function median(a, k,   i, j, x) {
    for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  END {
    printf "%-12s %-19s %5s %8s %8s %8s %7s %7s %6s  %s\n", "group", "scenario", "conc", "store", "rps", "ceiling", "p50_ms", "p99_ms", "ratio", "target (at 16 connections)"
    for (i = 1; i <= n; i++) {
      split(rows[i], f, "\t"); g = f[1]; s = f[2]; c = f[4]; st = f[5]; r = f[10]
      base = before[i] != "" && after[i] != "" ? (before[i] + after[i]) / 2 : before[i] != "" ? before[i] : after[i]
      if (base == "") base = s == "tokeninfo" ? first_get : first_post
      ratio = base > 0 ? f[6] / base : 0
      label = (g == "grants" && rounds > 1) ? g "/" r : g
      printf "%-12s %-19s %5s %8s %8s %8.0f %7s %7s %6.3f  %s\n", label, s, c, st, f[6], base, f[7], f[8], ratio, verdict(s, c, ratio, f[8], f[9])
      if (g == "grants" && rounds > 1) {
        if (!(s in seen)) { seen[s] = 1; order[++scenarios] = s }
        k = ++taken[s]; ratios[s, k] = ratio; rps[s, k] = f[6]; p99s[s, k] = f[8]; errors[s] += f[9]
      }
    }
    if (rounds > 1) {
      printf "\nthe grants group over its %d rounds (median; each ratio against the ceiling measured just before and after it)\n", rounds
      printf "%-12s %-19s %5s %8s %6s %13s %7s  %s\n", "group", "scenario", "conc", "rps", "ratio", "lowest-highest", "p99_ms", "target (at 16 connections)"
      for (i = 1; i <= scenarios; i++) {
        s = order[i]; k = taken[s]
        for (j = 1; j <= k; j++) { a[j] = ratios[s, j]; b[j] = rps[s, j]; d[j] = p99s[s, j] }
        m = median(a, k); low = a[1]; high = a[k]
        p99 = median(d, k)
        printf "%-12s %-19s %5s %8.0f %6.3f %7.3f-%.3f %7.2f  %s\n", "grants", s, 16, median(b, k), m, low, high, p99, verdict(s, 16, m, p99, errors[s])
      }
    }
    while ((getline line < rssfile) > 0) { split(line, x, "\t"); if (x[2] == "") continue
      if (x[2] > max) max = x[2]; if (x[3] !~ /^(idle|seeding|warmup)/ && first == "") first = x[2]; last = x[2] }
    printf "\nserver RSS: max %.0f MB, at first load %.0f MB, at the end %.0f MB (every second in %s)\n", max / 1024, first / 1024, last / 1024, rssfile
  }' "$results"
echo "results: $results"
