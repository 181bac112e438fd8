using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace Tollgate.Tests.Infrastructure;

/// <summary>
/// A PostgreSQL cluster of the test's own (initdb, a free port, a directory under /tmp), so that a test can kill the
/// database itself, which it must never do to the shared server every other test uses.
/// </summary>
/// <remarks>
/// Uses the binaries of Debian's postgresql package, which .ci/run installs for the PostgreSQL tests; run as root (CI),
/// the cluster runs as the package's <c>postgres</c> user, since PostgreSQL refuses to run as root.
/// </remarks>
internal sealed class PrivatePostgres : IAsyncDisposable
{
    private readonly string _bin;
    private readonly string _directory;
    private readonly int _port;

    private PrivatePostgres(string bin, string directory, int port)
    {
        _bin = bin;
        _directory = directory;
        _port = port;
    }

    private string DataDirectory => Path.Combine(_directory, "data");

    /// <summary>For <c>--db postgres:...</c> and for the test's own store.</summary>
    public string ConnectionString => new NpgsqlConnectionStringBuilder
    {
        Host = "127.0.0.1", Port = _port, Username = "postgres", Database = "tollgate", Timeout = 60, CommandTimeout = 120,
    }.ConnectionString;

    public static async Task<PrivatePostgres> StartAsync()
    {
        string bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(v => Path.Combine(v, "bin"))
                .Where(b => File.Exists(Path.Combine(b, "initdb"))).OrderByDescending(b => b, StringComparer.Ordinal).FirstOrDefault() ?? ""
            : "";
        if (bin.Length == 0)
        {
            throw new InvalidOperationException("a private PostgreSQL cluster needs Debian's postgresql package (.ci/run installs it)");
        }
        // Under /tmp, not the test's directory: the postgres user must reach it, and the socket path must stay short.
        string directory = Path.Combine("/tmp", "tollgate-pg-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(directory);
        var cluster = new PrivatePostgres(bin, directory, FreePort());
        if (Environment.UserName == "root")
        {
            await RunAsync("chown", ["postgres:postgres", directory]);
        }
        // --no-sync: the test kills processes, never the machine, so the operating system keeps every write either way.
        await cluster.RunAsPostgresAsync("initdb", ["-D", cluster.DataDirectory, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
        await cluster.StartAgainAsync();
        await using (var admin = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(cluster.ConnectionString) { Database = "postgres", Pooling = false }.ConnectionString))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand("CREATE DATABASE tollgate", admin);
            await create.ExecuteNonQueryAsync();
        }
        return cluster;
    }

    /// <summary>Starts the cluster (after <see cref="KillAsync"/>, PostgreSQL recovers from its WAL first) and waits until it accepts connections.</summary>
    public Task StartAgainAsync() => RunAsPostgresAsync("pg_ctl", [
        "-D", DataDirectory, "-l", Path.Combine(_directory, "log"), "-w", "-t", "120", "start",
        "-o", $"-p {_port} -k {_directory} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200",
    ]);

    /// <summary>
    /// Every process of the cluster stopped at once and then killed (SIGSTOP, then SIGKILL): no process gets to write
    /// anything after the first one dies, which is what a crash of the database machine's PostgreSQL looks like. What
    /// it had in shared memory (WAL not yet written, a commit not yet flushed) is gone; what it had written is not.
    /// </summary>
    public async Task KillAsync()
    {
        int postmaster = int.Parse(File.ReadLines(Path.Combine(DataDirectory, "postmaster.pid")).First(), System.Globalization.CultureInfo.InvariantCulture);
        // The postmaster first, so that it forks nothing more; then every child it has, in one signal; only then the kill.
        await ProcessSignals.SendAsync("STOP", [postmaster]);
        List<int> processes = [postmaster, .. ChildrenOf(postmaster)];
        await ProcessSignals.SendAsync("STOP", processes);
        await ProcessSignals.SendAsync("KILL", processes);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (processes.Any(pid => Directory.Exists($"/proc/{pid}")) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }
    }

    private static IEnumerable<int> ChildrenOf(int parent)
    {
        foreach (string entry in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(entry), out int pid))
            {
                continue;
            }
            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(entry, "stat"));
            }
            catch (IOException)
            {
                continue; // it ended while we looked
            }
            // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read from the last ')'.
            string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture) == parent)
            {
                yield return pid;
            }
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private Task RunAsPostgresAsync(string tool, IEnumerable<string> args) =>
        Environment.UserName == "root"
            ? RunAsync("runuser", ["-u", "postgres", "--", Path.Combine(_bin, tool), .. args])
            : RunAsync(Path.Combine(_bin, tool), args);

    private static async Task RunAsync(string program, IEnumerable<string> args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', start.ArgumentList)} exited {process.ExitCode}: {await errors}{await output}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await RunAsPostgresAsync("pg_ctl", ["-D", DataDirectory, "-m", "immediate", "-w", "stop"]);
        }
        catch (InvalidOperationException)
        {
            // Not running (the test killed it and did not start it again): nothing to stop.
        }
        TempDirectory.Delete(_directory);
    }
}
