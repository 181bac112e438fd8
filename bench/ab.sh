#!/usr/bin/env bash
# A/B of tollgate builds: the same scenarios (reuse, rotate, client_credentials, code_exchange, tokeninfo at 16
# connections) against each build on a fresh seeded database, each build between two measurements of the ceiling.
# The scenarios are bench/lib.sh's, as bench/run.sh's are.
# Build the old version somewhere (git archive REV | tar -x -C DIR; dotnet build -c Release DIR/src/Tollgate), then:
#   bench/ab.sh before=DIR/src/Tollgate/bin/Release/net10.0/tollgate.dll after=src/Tollgate/bin/Release/net10.0/tollgate.dll[:ENV=VALUE ...]
# Name a build twice (before=... after=... before2=... after2=...) to alternate them: this machine drifts by a third within minutes.
# Needs bench/run.sh to have built the bench tools once (or dotnet build -c Release bench/bench.slnf). D=SECONDS per scenario.
# POSTGRES=CONNECTION-STRING: each build on a scratch PostgreSQL database of its own (created, then dropped) instead of SQLite.
# Prints each measurement as it is taken, then a table: every result against the mean of the ceilings just before and
# after its build (POST for the grants, GET for tokeninfo). Every ceiling measurement follows an unmeasured pass over the
# same path: a ceiling measured cold reads up to a fifth low (17,586 rps cold, then 21,478 to 22,012
# warm, in one trial; 18,041 to 18,609 after 90 s idle against 21,670 just before, in another), and every ratio taken against it reads that much high. bench/run.sh brackets each result on its own.
set -uo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
d=${D:-5}
W=$(mktemp -d); ceiling_tokens "$W" 16
# Every process started here and every scratch PostgreSQL database is written down, because the builds run in a
# pipeline's subshell: an A/B that ends early (Ctrl-C, TERM) stops and drops them as a finished one does. The
# SQLite stores go too (100 to 350 MB a run); the logs and out.txt stay.
cleanup() {
  [ -s $W/pids ] && kill $(cat $W/pids) 2>/dev/null
  if [ -s $W/scratch-dbs ]; then while read -r db; do "${seeder[@]}" pg-drop --db "$db" > /dev/null; done < $W/scratch-dbs; fi
  rm -f $W/*.db $W/*.db-*
  echo "logs: $W" >&2
}
# Ctrl-C: the load tool exits cleanly on SIGINT, and a bash that sees its child exit cleanly carries on, so each
# pipeline's subshell below needs the trap of its own (a subshell does not inherit it) to stop after that measurement.
trap cleanup EXIT; trap 'exit 130' INT TERM
"${ceiling[@]}" --urls http://127.0.0.1:5400 > $W/ceil.log 2>&1 & echo $! >> $W/pids
sleep 2
ceil() {
  trap 'exit 130' INT TERM
  local kind
  for kind in post get; do
    load_run http://127.0.0.1:5400 $kind $W 3 -c 16 --warmup 0 > /dev/null
    echo "ceiling $kind $(load_run http://127.0.0.1:5400 $kind $W $d -c 16 | head -1)"
  done
}
ceil | tee $W/out.txt
n=0
for cfg in "$@"; do n=$((n + 1)); port=$((5400 + n)); {
  trap 'exit 130' INT TERM
  name=${cfg%%=*}; rest=${cfg#*=}; dll=${rest%%:*}; envs=""; [[ "$rest" == *:* ]] && envs=${rest#*:}
  if [ -n "${POSTGRES:-}" ]; then bench_db=$("${seeder[@]}" pg-create --server "postgres:$POSTGRES"); served="$bench_db;Maximum Pool Size=80"
    echo "$bench_db" >> $W/scratch-dbs
  else bench_db=sqlite:$W/$name.db; served=$bench_db; fi
  "${seeder[@]}" seed --db "$bench_db" --out $W/$name --chains 16 > /dev/null
  env $envs dotnet $dll serve --urls http://127.0.0.1:$port --db "$served" > $W/$name.log 2>&1 & P=$!; echo $P >> $W/pids
  sleep 2; U=http://127.0.0.1:$port
  # An unmeasured pass over the writing paths first (reuse warms what they share): tiered JIT keeps compiling for seconds.
  for scenario in rotate code_exchange; do load_run $U $scenario $W/$name 3 -c 16 --warmup 0 > /dev/null; done
  for scenario in reuse rotate client_credentials code_exchange tokeninfo; do
    echo "$name $scenario $(load_run $U $scenario $W/$name $d -c 16 | head -2 | tr '\n' ' ')"
  done
  echo "$name rss_kb $(awk '/VmRSS/{print $2}' /proc/$P/status)"
  kill $P; wait $P 2>/dev/null
  # Dropped here, so the exit's cleanup has only a build it interrupted to drop.
  if [ -n "${POSTGRES:-}" ]; then "${seeder[@]}" pg-drop --db "$bench_db" > /dev/null; : > $W/scratch-dbs; fi
  ceil
} | tee -a $W/out.txt; done
echo
awk '$1 == "ceiling" { for (i = 3; i <= NF; i++) if ($i ~ /^rps=/) { v = substr($i, 5) }
                       if (pending) { for (k in res) if (kind[k] == $2) { ratio[k] = res[k] / ((before[$2] + v) / 2) } }
                       before[$2] = v; if ($2 == "get") { pending = 0; for (k in res) delete res[k] } next }
     $2 == "rss_kb" { next }
     { for (i = 3; i <= NF; i++) if ($i ~ /^rps=/) { r = substr($i, 5) } else if ($i ~ /^p99_ms=/) { p = substr($i, 8) }
       k = $1 " " $2; order[++n] = k; res[k] = r; rps[k] = r; p99[k] = p; kind[k] = ($2 == "tokeninfo") ? "get" : "post"; pending = 1 }
     END { printf "%-29s %8s %8s %7s   (ratio: against the mean of the ceilings just before and after the build)\n", "build scenario", "rps", "p99_ms", "ratio"
           for (j = 1; j <= n; j++) { k = order[j]; split(k, a, " ")
             printf "%-10s %-18s %8s %8s %7s\n", a[1], a[2], rps[k], p99[k], (k in ratio) ? sprintf("%.3f", ratio[k]) : "-" } }' $W/out.txt
