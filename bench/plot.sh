#!/usr/bin/env bash
# Draws the PNG plots of docs/performance.md from one bench/run.sh output directory (needs gnuplot:
# apt-get install gnuplot-nox).
#   bench/plot.sh RESULTS_DIR OUTPUT_DIR
# Writes scaling-rps.png, scaling-p99.png (against connections), store-size.png (against live refresh
# tokens) and rss.png (server RSS over the whole run).
set -euo pipefail
in=$1; out=$2; mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
res="$in/results.tsv"

# series GROUP SCENARIO SYSTEM -> "x rps p99" lines, one per x: the mean where x was measured more than once (run.sh
# measures the ceiling before and after each workload)
series() { awk -F'\t' -v g="$1" -v s="$2" -v sys="$3" 'NR > 1 && $1 == g && $2 == s && $3 == sys {
  x = (g == "store") ? $5 : $4; if (!(x in n)) order[++xs] = x; n[x]++; rps[x] += $6; p99[x] += $8 }
  END { for (i = 1; i <= xs; i++) { x = order[i]; print x "\t" rps[x] / n[x] "\t" p99[x] / n[x] } }' "$res"; }
series connections post ceiling >"$tmp/c-ceil"; series connections reuse tollgate >"$tmp/c-reuse"
series connections rotate tollgate >"$tmp/c-rotate"
series store post ceiling >"$tmp/s-ceil"; series store get ceiling >"$tmp/s-ceilget"
series store reuse tollgate >"$tmp/s-reuse"; series store rotate tollgate >"$tmp/s-rotate"; series store tokeninfo tollgate >"$tmp/s-info"
series store client_credentials tollgate >"$tmp/s-cc"; series store code_exchange tollgate >"$tmp/s-code"
awk -F'\t' '$2 != "" { print $1 "\t" $2 / 1024 }' "$in/rss.tsv" >"$tmp/rss"

gnuplot <<EOF
set terminal pngcairo size 900,520 font ",11"
set grid
set key below
set logscale x 2
set xlabel "connections (closed loop)"
set output "$out/scaling-rps.png"
set title "Throughput against connections (durable SQLite, 2 cores)"
set ylabel "requests/s"
set yrange [0:*]
plot "$tmp/c-ceil" using 1:2 with linespoints title "ceiling", \
     "$tmp/c-reuse" using 1:2 with linespoints title "refresh (reuse)", \
     "$tmp/c-rotate" using 1:2 with linespoints title "refresh (rotate, one durable write each)"
set output "$out/scaling-p99.png"
set title "p99 latency against connections"
set ylabel "p99 ms"
set logscale y 10
set yrange [*:*]
plot "$tmp/c-ceil" using 1:3 with linespoints title "ceiling", \
     "$tmp/c-reuse" using 1:3 with linespoints title "refresh (reuse)", \
     "$tmp/c-rotate" using 1:3 with linespoints title "refresh (rotate)"
unset logscale
set output "$out/store-size.png"
set title "Throughput against store size (16 connections)"
set xlabel "live refresh tokens in the store (1 profile per 1,000)"
set ylabel "requests/s"
set yrange [0:*]
set style data linespoints
plot "$tmp/s-ceil" using 0:2:xtic(1) title "ceiling (POST)", \
     "$tmp/s-reuse" using 0:2 title "refresh (reuse)", \
     "$tmp/s-rotate" using 0:2 title "refresh (rotate)", \
     "$tmp/s-info" using 0:2 title "tokeninfo"$(
  # Runs before the store-size group measured every grant had only the three above.
  [ -s "$tmp/s-cc" ] && printf ', \\\n     "%s" using 0:2 title "client credentials"' "$tmp/s-cc"
  [ -s "$tmp/s-code" ] && printf ', \\\n     "%s" using 0:2 title "authorization code exchange"' "$tmp/s-code")
set output "$out/rss.png"
set title "Server RSS over the whole bench run (a new server for the store-size scenarios, then any soak)"
set xlabel "seconds since the bench started"
set ylabel "RSS MB"
set yrange [0:300]
plot "$tmp/rss" using 1:2 with lines title "tollgate serve", 250 with lines dashtype 2 title "target 250 MB"
EOF
ls "$out"/*.png
