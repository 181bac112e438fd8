using System.Diagnostics;

namespace Tollgate.Tests.Infrastructure;

/// <summary>
/// A directory that behaves like a disk with a volatile write cache: whatever is written under <see cref="MountPoint"/>
/// reaches <see cref="Backing"/> only when the writer fsyncs it, and <see cref="CutPowerAsync"/> throws away everything
/// that was not. It is <c>powercut.py</c> (beside this file) over FUSE; see its header for the model and its limits.
/// </summary>
/// <remarks>
/// Needs /dev/fuse, root, and Debian's python3-fusepy; .ci/run installs the package. Without them the test fails
/// and says so: a durability test that quietly skips proves nothing. The one way out is explicit and shows in the
/// results as skipped, never as passed: see <see cref="PowerCutFactAttribute"/>.
/// </remarks>
internal sealed class PowerCutDisk : IAsyncDisposable
{
    private const string Python = "/usr/bin/python3";
    private readonly Process _daemon;
    private readonly Task<string> _errors;
    private bool _unmounted;

    private PowerCutDisk(Process daemon, string backing, string mountPoint)
    {
        _daemon = daemon;
        _errors = daemon.StandardError.ReadToEndAsync();
        Backing = backing;
        MountPoint = mountPoint;
    }

    /// <summary>Where programs under test read and write.</summary>
    public string MountPoint { get; }

    /// <summary>What the disk holds: after <see cref="UnmountAsync"/>, what survived.</summary>
    public string Backing { get; }

    public static async Task<PowerCutDisk> MountAsync(string directory)
    {
        string script = Path.Combine(AppContext.BaseDirectory, "Infrastructure", "powercut.py");
        if (!File.Exists("/dev/fuse") || !File.Exists(Python))
        {
            throw new InvalidOperationException("the power-cut disk needs /dev/fuse and /usr/bin/python3 with Debian's python3-fusepy (.ci/run installs them)");
        }
        string backing = Path.Combine(directory, "disk");
        string mountPoint = Path.Combine(directory, "mnt");
        Directory.CreateDirectory(backing);
        Directory.CreateDirectory(mountPoint);
        var start = new ProcessStartInfo(Python)
        {
            ArgumentList = { script, backing, mountPoint },
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var disk = new PowerCutDisk(Process.Start(start)!, backing, mountPoint);
        await disk.ExpectLineAsync("mounted", TimeSpan.FromSeconds(30));
        return disk;
    }

    /// <summary>Cuts the power: unsynced writes are gone, and every later operation on the mount fails with EIO.</summary>
    /// <returns>The daemon's account of what it threw away.</returns>
    public async Task<string> CutPowerAsync()
    {
        await _daemon.StandardInput.WriteLineAsync("cut");
        await _daemon.StandardInput.FlushAsync();
        return await ExpectLineAsync("cut:", TimeSpan.FromSeconds(30));
    }

    /// <summary>Unmounts (writing everything back first, unless the power was cut) and waits for the daemon to end.</summary>
    public async Task UnmountAsync()
    {
        if (_unmounted)
        {
            return;
        }
        _unmounted = true;
        if (!_daemon.HasExited)
        {
            // Lazy: a process killed a moment ago may not have closed its files yet; the kernel detaches when it has.
            using var umount = Process.Start(new ProcessStartInfo("umount") { ArgumentList = { "-l", MountPoint }, RedirectStandardError = true })!;
            await umount.WaitForExitAsync();
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await _daemon.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            _daemon.Kill();
            throw new InvalidOperationException($"the power-cut daemon did not exit after umount: {MountPoint}");
        }
    }

    private async Task<string> ExpectLineAsync(string prefix, TimeSpan within)
    {
        using var timeout = new CancellationTokenSource(within);
        while (await _daemon.StandardOutput.ReadLineAsync(timeout.Token) is { } line)
        {
            if (line.StartsWith(prefix, StringComparison.Ordinal))
            {
                return line;
            }
        }
        await _daemon.WaitForExitAsync(CancellationToken.None);
        throw new InvalidOperationException($"the power-cut daemon ended before saying '{prefix}': {await _errors}");
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await UnmountAsync();
        }
        finally
        {
            _daemon.Dispose();
        }
    }
}

/// <summary>
/// A test on the <see cref="PowerCutDisk"/>. It runs unless <c>TOLLGATE_TEST_POWER_CUT=off</c>, which .ci/run sets, with a
/// warning in its output, only on a machine whose kernel offers no /dev/fuse (a package cannot install that); the
/// tests are then reported as skipped.
/// </summary>
internal sealed class PowerCutFactAttribute : FactAttribute
{
    public PowerCutFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("TOLLGATE_TEST_POWER_CUT") == "off")
        {
            Skip = "TOLLGATE_TEST_POWER_CUT=off: this machine has no /dev/fuse for the power-cut disk";
        }
    }
}
