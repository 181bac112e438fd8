#!/usr/bin/env bash
# A/B of tollgate builds: the same scenarios (reuse, rotate, client_credentials, code, tokeninfo at 16
# connections) against each build on a fresh seeded database, with the ceiling measured before and after.
# Build the old version somewhere (git archive REV | tar -x -C DIR; dotnet build -c Release DIR/src/Tollgate), then:
#   bench/ab.sh before=DIR/src/Tollgate/bin/Release/net10.0/tollgate.dll after=src/Tollgate/bin/Release/net10.0/tollgate.dll[:ENV=VALUE ...]
# Needs bench/run.sh to have built the bench tools once (or dotnet build -c Release bench/bench.slnf). D=SECONDS per scenario.
# POSTGRES=CONNECTION-STRING: each build on a scratch PostgreSQL database of its own (created, then dropped) instead of SQLite.
set -uo pipefail
R=$(cd "$(dirname "$0")/.." && pwd); rel=bin/Release/net10.0; d=${D:-5}
L="dotnet $R/bench/Tollgate.LoadTool/$rel/tollgate-load.dll"; SEED="dotnet $R/bench/Tollgate.Benchmarks/$rel/Tollgate.Benchmarks.dll"
ID=amzn1.application-oa2-client.00000000000000000000000000be4c01; ID2=amzn1.application-oa2-client.00000000000000000000000000be4c02; S=c007c411c9657dde807a11a96a3cfd8a2972f9599ac28de241675832f63cac05
W=$(mktemp -d); for i in $(seq 16); do echo x; done > $W/cs.txt
dotnet $R/bench/ceiling/$rel/Ceiling.dll --urls http://127.0.0.1:5400 > $W/ceil.log 2>&1 & CP=$!
sleep 2
ceil() { echo "ceiling post $($L http://127.0.0.1:5400 --mode refresh --client-id a --client-secret b --seed-file $W/cs.txt -d $d)"; echo "ceiling get  $($L http://127.0.0.1:5400 --mode tokeninfo --client-id a --client-secret b --seed-file $W/cs.txt -d $d)"; }
ceil
port=5401
for cfg in "$@"; do
  name=${cfg%%=*}; rest=${cfg#*=}; dll=${rest%%:*}; envs=""; [[ "$rest" == *:* ]] && envs=${rest#*:}
  if [ -n "${POSTGRES:-}" ]; then db=$($SEED pg-create --server "postgres:$POSTGRES"); served="$db;Maximum Pool Size=80"
  else db=$W/$name.db; served=sqlite:$db; fi
  $SEED seed --db "$db" --out $W/$name --chains 16 > /dev/null
  env $envs dotnet $dll serve --urls http://127.0.0.1:$port --db "$served" > $W/$name.log 2>&1 & P=$!
  sleep 2; U=http://127.0.0.1:$port
  echo "$name reuse     $($L $U --mode refresh --client-id $ID --client-secret $S --seed-file $W/$name/reuse-tokens.txt -d $d | head -2 | tr '\n' ' ')"
  echo "$name rotate    $($L $U --mode refresh --client-id $ID2 --client-secret $S --seed-file $W/$name/rotate-tokens.txt -d $d | head -2 | tr '\n' ' ')"
  echo "$name cc        $($L $U --mode client_credentials --client-id $ID --client-secret $S --scope videocentral::reporting -d $d | head -2 | tr '\n' ' ')"
  $SEED codes --db "$db" --client-id $ID --count 40000 --out $W/$name/codes.txt > /dev/null
  echo "$name code      $($L $U --mode code --client-id $ID --client-secret $S --code-file $W/$name/codes.txt --redirect-uri https://bench.example/cb -d $d | head -2 | tr '\n' ' ')"
  echo "$name tokeninfo $($L $U --mode tokeninfo --client-id $ID --client-secret $S --seed-file $W/$name/reuse-tokens.txt -d $d | head -2 | tr '\n' ' ')"
  echo "$name rss_kb $(awk '/VmRSS/{print $2}' /proc/$P/status)"
  kill $P; wait $P 2>/dev/null; port=$((port+1))
  if [ -n "${POSTGRES:-}" ]; then $SEED pg-drop --db "$db" > /dev/null; fi
done
ceil
kill $CP
