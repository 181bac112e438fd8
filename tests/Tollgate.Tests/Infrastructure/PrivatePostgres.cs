using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace Tollgate.Tests.Infrastructure;

/// <summary>
/// A PostgreSQL cluster of the test's own (initdb, a free port, a directory under /tmp), so that a test can kill the
/// database itself, which it must never do to the shared server every other test uses; optionally with its data
/// directory on a <see cref="PowerCutDisk"/>, so that a test can cut the database machine's power.
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
    private readonly PowerCutDisk? _disk;
    private readonly string _settings;
    private string _dataDirectory;

    private PrivatePostgres(string bin, string directory, int port, PowerCutDisk? disk, string settings)
    {
        _bin = bin;
        _directory = directory;
        _port = port;
        _disk = disk;
        _settings = settings;
        _dataDirectory = Path.Combine(disk?.MountPoint ?? directory, "data");
    }

    /// <summary>For <c>--db postgres:...</c> and for the test's own store.</summary>
    public string ConnectionString => new NpgsqlConnectionStringBuilder
    {
        Host = "127.0.0.1", Port = _port, Username = "postgres", Database = "tollgate", Timeout = 60, CommandTimeout = 120,
    }.ConnectionString;

    /// <param name="onPowerCutDisk">The data directory on a disk that keeps only what PostgreSQL fsynced (<see cref="CutThePowerAsync"/>).</param>
    /// <param name="settings">Server settings, as <c>-c</c> options; by default every one that makes a commit durable is on.</param>
    public static async Task<PrivatePostgres> StartAsync(bool onPowerCutDisk = false, string settings = "-c fsync=on -c synchronous_commit=on")
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
        bool root = Environment.UserName == "root";
        if (root)
        {
            await RunAsync("chown", ["postgres:postgres", directory]);
        }
        var disk = onPowerCutDisk ? await PowerCutDisk.MountAsync(directory) : null;
        var cluster = new PrivatePostgres(bin, directory, FreePort(), disk, settings);
        // initdb writes its files under the disk rather than through it: they are on the disk before the test begins
        // either way, and through the mount they would cost seconds. --no-sync: the files are in the operating
        // system's cache, which only a power cut of the whole machine would lose, and no test does that to /tmp.
        try
        {
            string initialData = disk is null ? cluster._dataDirectory : Path.Combine(disk.Backing, "data");
            Directory.CreateDirectory(initialData);
            if (root)
            {
                await RunAsync("chown", ["postgres:postgres", initialData]);
            }
            await cluster.RunAsPostgresAsync("initdb", ["-D", initialData, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
            await cluster.StartAgainAsync();
            await using var admin = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(cluster.ConnectionString) { Database = "postgres", Pooling = false }.ConnectionString);
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand("CREATE DATABASE tollgate", admin);
            await create.ExecuteNonQueryAsync();
        }
        catch
        {
            await cluster.DisposeAsync(); // a FUSE mount left behind would outlive the test run
            throw;
        }
        return cluster;
    }

    /// <summary>Starts the cluster (after <see cref="KillAsync"/>, PostgreSQL recovers from its WAL first) and waits until it accepts connections.</summary>
    public Task StartAgainAsync() => RunAsPostgresAsync("pg_ctl", [
        "-D", _dataDirectory, "-l", Path.Combine(_directory, "log"), "-w", "-t", "120", "start",
        "-o", $"-p {_port} -k {_directory} -c listen_addresses=127.0.0.1 -c max_connections=200 {_settings}",
    ]);

    /// <summary>
    /// Every process of the cluster stopped at once and then killed (SIGSTOP, then SIGKILL): no process gets to write
    /// anything after the first one dies, which is what a crash of the database machine's PostgreSQL looks like. What
    /// it had in shared memory (WAL not yet written, a commit not yet flushed) is gone; what it had written is not.
    /// </summary>
    public Task KillAsync() => StopAndKillEveryProcessAsync(whileStopped: () => Task.CompletedTask);

    /// <summary>
    /// The database machine loses its power: every process of the cluster is stopped, everything not yet fsynced to the
    /// power-cut disk is thrown away, and then they are killed. The cluster's data directory is from then on what the
    /// disk held (the mount is gone), and <see cref="StartAgainAsync"/> recovers from it. Returns the disk's account.
    /// </summary>
    public async Task<string> CutThePowerAsync()
    {
        var disk = _disk ?? throw new InvalidOperationException("this cluster is not on a power-cut disk");
        string cut = "";
        await StopAndKillEveryProcessAsync(whileStopped: async () => cut = await disk.CutPowerAsync());
        await disk.UnmountAsync();
        _dataDirectory = Path.Combine(disk.Backing, "data");
        // The machine has rebooted, so no postmaster runs; its PID file may have survived empty (PostgreSQL need not
        // sync it), and pg_ctl refuses to start over an empty one, as it would on the real machine until someone removed it.
        File.Delete(Path.Combine(_dataDirectory, "postmaster.pid"));
        return cut;
    }

    private async Task StopAndKillEveryProcessAsync(Func<Task> whileStopped)
    {
        int postmaster = int.Parse(File.ReadLines(Path.Combine(_dataDirectory, "postmaster.pid")).First(), System.Globalization.CultureInfo.InvariantCulture);
        // The postmaster first, so that it forks nothing more; then every child it has, in one signal; only then the kill.
        await ProcessSignals.SendAsync("STOP", [postmaster]);
        List<int> processes = [postmaster, .. ChildrenOf(postmaster)];
        await ProcessSignals.SendAsync("STOP", processes);
        await whileStopped();
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
            await RunAsPostgresAsync("pg_ctl", ["-D", _dataDirectory, "-m", "immediate", "-w", "stop"]);
        }
        catch (InvalidOperationException)
        {
            // Not running (the test killed it and did not start it again): nothing to stop.
        }
        if (_disk is not null)
        {
            await _disk.DisposeAsync();
        }
        TempDirectory.Delete(_directory);
    }
}
