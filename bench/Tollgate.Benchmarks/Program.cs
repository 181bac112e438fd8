using BenchmarkDotNet.Running;
using Tollgate.Benchmarks;

// `seed` and `codes` fill a database for bench/run.sh, `pg-create` / `pg-drop` make and remove a scratch PostgreSQL database for it,
// `disk` measures how long one durable commit takes where the database lives; anything else goes to BenchmarkDotNet
// (e.g. `--filter '*' --job short`).
return args.FirstOrDefault() switch
{
    "seed" => await Seeder.SeedAsync(args[1..]),
    "codes" => await Seeder.CodesAsync(args[1..]),
    "pg-create" or "pg-drop" => await Seeder.PostgresDatabaseAsync(args[0], args[1..]),
    "disk" => DiskProbe.Run(args[1..]),
    _ => RunBenchmarks(args),
};

static int RunBenchmarks(string[] args)
{
    var summaries = BenchmarkSwitcher.FromAssembly(typeof(HotPathBenchmarks).Assembly).Run(args);
    return summaries.Any(s => s.HasCriticalValidationErrors) ? 1 : 0;
}
