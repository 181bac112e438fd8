using System.Diagnostics;

namespace Tollgate.Tests.Infrastructure;

/// <summary>POSIX signals to other processes, through <c>kill</c> (.NET sends none but SIGKILL of its own).</summary>
internal static class ProcessSignals
{
    /// <summary>Signals every process in one <c>kill</c>; one that ended meanwhile makes it exit 1, and the others are still signalled.</summary>
    public static async Task SendAsync(string signal, IEnumerable<int> pids)
    {
        var start = new ProcessStartInfo("kill") { RedirectStandardError = true, ArgumentList = { $"-{signal}" } };
        foreach (int pid in pids)
        {
            start.ArgumentList.Add(pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        using var kill = Process.Start(start)!;
        await kill.WaitForExitAsync();
    }
}
