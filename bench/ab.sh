#!/usr/bin/env bash
# A/B of tollgate builds: the same scenarios (reuse, rotate, client_credentials, code, tokeninfo at 16
# connections) against each build on a fresh seeded database, each build between two measurements of the ceiling.
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
R=$(cd "$(dirname "$0")/.." && pwd); rel=bin/Release/net10.0; d=${D:-5}
L="dotnet $R/bench/Tollgate.LoadTool/$rel/tollgate-load.dll"; SEED="dotnet $R/bench/Tollgate.Benchmarks/$rel/Tollgate.Benchmarks.dll"
ID=amzn1.application-oa2-client.00000000000000000000000000be4c01; ID2=amzn1.application-oa2-client.00000000000000000000000000be4c02; S=c007c411c9657dde807a11a96a3cfd8a2972f9599ac28de241675832f63cac05
W=$(mktemp -d); for i in $(seq 16); do echo x; done > $W/cs.txt
dotnet $R/bench/ceiling/$rel/Ceiling.dll --urls http://127.0.0.1:5400 > $W/ceil.log 2>&1 & CP=$!
sleep 2
ceil() {
  local path
  for path in refresh tokeninfo; do
    $L http://127.0.0.1:5400 --mode $path --client-id a --client-secret b --seed-file $W/cs.txt -d 3 --warmup 0 > /dev/null
    echo "ceiling $([ $path = refresh ] && echo post || echo get) $($L http://127.0.0.1:5400 --mode $path --client-id a --client-secret b --seed-file $W/cs.txt -d $d | head -1)"
  done
}
ceil | tee $W/out.txt
n=0
for cfg in "$@"; do n=$((n + 1)); port=$((5400 + n)); {
  name=${cfg%%=*}; rest=${cfg#*=}; dll=${rest%%:*}; envs=""; [[ "$rest" == *:* ]] && envs=${rest#*:}
  if [ -n "${POSTGRES:-}" ]; then db=$($SEED pg-create --server "postgres:$POSTGRES"); served="$db;Maximum Pool Size=80"
  else db=$W/$name.db; served=sqlite:$db; fi
  $SEED seed --db "$db" --out $W/$name --chains 16 > /dev/null
  env $envs dotnet $dll serve --urls http://127.0.0.1:$port --db "$served" > $W/$name.log 2>&1 & P=$!
  sleep 2; U=http://127.0.0.1:$port
  # An unmeasured pass over the writing paths first (reuse warms what they share): tiered JIT keeps compiling for seconds.
  $L $U --mode refresh --client-id $ID2 --client-secret $S --seed-file $W/$name/rotate-tokens.txt --dump-tokens $W/$name/rotate-tokens.txt -d 3 --warmup 0 > /dev/null
  $SEED codes --db "$db" --client-id $ID --count 30000 --out $W/$name/warm-codes.txt > /dev/null
  $L $U --mode code --client-id $ID --client-secret $S --code-file $W/$name/warm-codes.txt --redirect-uri https://bench.example/cb -d 3 --warmup 0 > /dev/null
  echo "$name reuse     $($L $U --mode refresh --client-id $ID --client-secret $S --seed-file $W/$name/reuse-tokens.txt -d $d | head -2 | tr '\n' ' ')"
  echo "$name rotate    $($L $U --mode refresh --client-id $ID2 --client-secret $S --seed-file $W/$name/rotate-tokens.txt -d $d | head -2 | tr '\n' ' ')"
  echo "$name cc        $($L $U --mode client_credentials --client-id $ID --client-secret $S --scope videocentral::reporting -d $d | head -2 | tr '\n' ' ')"
  $SEED codes --db "$db" --client-id $ID --count $(( (d + 2) * 12000 )) --out $W/$name/codes.txt > /dev/null
  echo "$name code      $($L $U --mode code --client-id $ID --client-secret $S --code-file $W/$name/codes.txt --redirect-uri https://bench.example/cb -d $d | head -2 | tr '\n' ' ')"
  echo "$name tokeninfo $($L $U --mode tokeninfo --client-id $ID --client-secret $S --seed-file $W/$name/reuse-tokens.txt -d $d | head -2 | tr '\n' ' ')"
  echo "$name rss_kb $(awk '/VmRSS/{print $2}' /proc/$P/status)"
  kill $P; wait $P 2>/dev/null
  if [ -n "${POSTGRES:-}" ]; then $SEED pg-drop --db "$db" > /dev/null; fi
  ceil
} | tee -a $W/out.txt; done
kill $CP
echo
awk '$1 == "ceiling" { for (i = 3; i <= NF; i++) if ($i ~ /^rps=/) { v = substr($i, 5) }
                       if (pending) { for (k in res) if (kind[k] == $2) { ratio[k] = res[k] / ((before[$2] + v) / 2) } }
                       before[$2] = v; if ($2 == "get") { pending = 0; for (k in res) delete res[k] } next }
     $2 == "rss_kb" { next }
     { for (i = 3; i <= NF; i++) if ($i ~ /^rps=/) { r = substr($i, 5) } else if ($i ~ /^p99_ms=/) { p = substr($i, 8) }
       k = $1 " " $2; order[++n] = k; res[k] = r; rps[k] = r; p99[k] = p; kind[k] = ($2 == "tokeninfo") ? "get" : "post"; pending = 1 }
     END { printf "%-24s %8s %8s %7s   (ratio: against the mean of the ceilings just before and after the build)\n", "build scenario", "rps", "p99_ms", "ratio"
           for (j = 1; j <= n; j++) { k = order[j]; split(k, a, " ")
             printf "%-10s %-13s %8s %8s %7s\n", a[1], a[2], rps[k], p99[k], (k in ratio) ? sprintf("%.3f", ratio[k]) : "-" } }' $W/out.txt
