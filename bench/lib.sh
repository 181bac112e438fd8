# What bench/run.sh and bench/ab.sh share, sourced by both: where the built bench tools are, the profiles the seeder
# creates, and the load tool's arguments for every scenario, so that the two scripts cannot drift apart on what a
# scenario means. Not a script of its own.

bench_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench_rel=bin/Release/net10.0
tollgate=(dotnet "$bench_repo/src/Tollgate/$bench_rel/tollgate.dll")
load=(dotnet "$bench_repo/bench/Tollgate.LoadTool/$bench_rel/tollgate-load.dll")
seeder=(dotnet "$bench_repo/bench/Tollgate.Benchmarks/$bench_rel/Tollgate.Benchmarks.dll")
ceiling=(dotnet "$bench_repo/bench/ceiling/$bench_rel/Ceiling.dll")

# The two security profiles `Tollgate.Benchmarks seed` creates (one under the reuse policy, one under rotate) and
# their shared secret. They exist only in the bench's own fresh stores.
secret=c007c411c9657dde807a11a96a3cfd8a2972f9599ac28de241675832f63cac05
reuse_id=amzn1.application-oa2-client.00000000000000000000000000be4c01
rotate_id=amzn1.application-oa2-client.00000000000000000000000000be4c02

# ceiling_tokens DIR COUNT: the ceiling's "refresh tokens" (it never looks at them; the load tool needs one per connection).
ceiling_tokens() { for _ in $(seq 1 "$2"); do echo "Atzr|ceiling"; done >"$1/ceiling-tokens.txt"; }

# load_run URL SCENARIO SEEDS SECONDS [more load-tool options]: one closed-loop run of SCENARIO for SECONDS, printing the
# load tool's report. SCENARIO is a grant (reuse, rotate, client_credentials, code_exchange, tokeninfo) or the
# ceiling's POST or GET (post, get); SEEDS is the directory the seeder wrote its tokens to (for post and get, the one
# ceiling_tokens wrote to). rotate writes the tokens it was last given back, so the next run starts from live ones.
# code_exchange first mints fresh one-use codes in the store $bench_db (set by the caller): they expire after 5
# minutes, as the server's do, so they cannot be minted once for a whole run; 12,000 a second of run and warm-up is
# more than this machine redeems (about 9,000).
load_run() {
  local url=$1 scenario=$2 seeds=$3 seconds=$4 key=$secret args; shift 4
  case "$scenario" in
    reuse) args=(--mode refresh --client-id "$reuse_id" --seed-file "$seeds/reuse-tokens.txt");;
    rotate) args=(--mode refresh --client-id "$rotate_id" --seed-file "$seeds/rotate-tokens.txt"
      --dump-tokens "$seeds/rotate-tokens.txt");;
    client_credentials) args=(--mode client_credentials --client-id "$reuse_id" --scope videocentral::reporting);;
    code_exchange)
      "${seeder[@]}" codes --db "$bench_db" --client-id "$reuse_id" --count $(( (seconds + 3) * 12000 )) \
        --out "$seeds/codes.txt" >/dev/null || return 1
      args=(--mode code --client-id "$reuse_id" --code-file "$seeds/codes.txt" --redirect-uri https://bench.example/cb);;
    tokeninfo) args=(--mode tokeninfo --client-id "$reuse_id" --seed-file "$seeds/reuse-tokens.txt");;
    # The ceiling checks nothing; its form is only as long as it has always been, so old runs compare.
    post) key=b; args=(--mode refresh --client-id a --seed-file "$seeds/ceiling-tokens.txt");;
    get) key=b; args=(--mode tokeninfo --client-id a --seed-file "$seeds/ceiling-tokens.txt");;
    *) echo "unknown scenario '$scenario'" >&2; return 2;;
  esac
  "${load[@]}" "$url" "${args[@]}" --client-secret "$key" -d "$seconds" "$@"
}
