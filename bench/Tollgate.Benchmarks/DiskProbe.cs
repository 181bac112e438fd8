using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Microsoft.Data.Sqlite;
using Tollgate.Server.Storage.Sqlite;

namespace Tollgate.Benchmarks;

/// <summary>
/// <c>disk [--dir DIR] [--commits N]</c>: how long one durable commit takes on the disk under DIR, committed the way the
/// server commits (a WAL-mode SQLite file, synchronous=FULL, so one fsync of the WAL per transaction), one at a time.
/// Prints one line: <c>disk dir=DIR commits=N p50_ms=.. p99_ms=.. mean_ms=.. per_s=..</c>.
/// </summary>
/// <remarks>
/// Why bench/run.sh prints this above its table: a rotation or a code exchange is answered only after its batch's
/// fsync, so this is the floor under their latency, and it differs from machine to machine far more than any code
/// change does (this bench's machine measured about 2.5 ms per commit one week and 0.19 ms a later one). A table without
/// it cannot be compared with another. The first pass of N commits is not measured: it grows the WAL to its working
/// size; the WAL is then started over, as the server's writer does, so the measured pass overwrites blocks the file
/// already has instead of allocating new ones.
/// </remarks>
internal static class DiskProbe
{
    public static int Run(string[] args)
    {
        string dir = Path.GetFullPath(Seeder.Option(args, "--dir") ?? Directory.GetCurrentDirectory());
        int commits = int.Parse(Seeder.Option(args, "--commits") ?? "1000", CultureInfo.InvariantCulture);
        if (commits < 10)
        {
            throw new ArgumentException("--commits takes a whole number of at least 10");
        }
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, $"tollgate-disk-probe-{Guid.NewGuid():N}.db");
        try
        {
            var latencies = Measure(path, commits);
            Array.Sort(latencies);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"disk dir={dir} commits={commits} p50_ms={Percentile(latencies, 0.50):F3} p99_ms={Percentile(latencies, 0.99):F3} " +
                $"mean_ms={latencies.Average():F3} per_s={1000 / latencies.Average():F0}"));
            return 0;
        }
        finally
        {
            foreach (string file in new[] { path, path + "-wal", path + "-shm" })
            {
                File.Delete(file);
            }
        }
    }

    private static double[] Measure(string path, int commits)
    {
        var builder = new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = false };
        // SqliteSession is the server's own connection type: same pragmas (WAL, synchronous=FULL), same prepared commands.
        using var session = new SqliteSession(builder.ToString());
        session.Execute("PRAGMA wal_autocheckpoint = 0; CREATE TABLE probe (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)");
        // About what one rotation adds: a 32-byte hash key and its row.
        byte[] payload = RandomNumberGenerator.GetBytes(160);
        for (int i = 0; i < commits; i++)
        {
            session.Command("INSERT INTO probe (payload) VALUES ($payload)").With("$payload", payload).ExecuteNonQuery();
        }
        session.Execute("PRAGMA wal_checkpoint(RESTART)");
        var latencies = new double[commits];
        for (int i = 0; i < commits; i++)
        {
            long started = Stopwatch.GetTimestamp();
            session.Command("INSERT INTO probe (payload) VALUES ($payload)").With("$payload", payload).ExecuteNonQuery();
            latencies[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        }
        return latencies;
    }

    /// <summary>Nearest rank on sorted values.</summary>
    private static double Percentile(double[] sorted, double p) =>
        sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
}
