using System.Diagnostics;
using System.Text.Json;

namespace Tollgate.Tests.Infrastructure;

/// <summary>The real <c>tollgate</c> binary, run as a child process: admin commands and <c>serve</c>.</summary>
internal static class TollgateCommand
{
    /// <summary>The built tollgate.dll, copied next to the tests by the project reference.</summary>
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "tollgate.dll");

    public static ProcessStartInfo StartInfo(string workingDirectory, IEnumerable<string> args, IDictionary<string, string>? env = null)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Dll);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        info.Environment.Remove("TOLLGATE_DB");
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        // No diagnostics IPC socket or debugger pipes in /tmp: a child killed with SIGKILL, as the durability tests kill
        // hundreds, cannot remove its own, and every full run left about 370 files behind. No test attaches to a child.
        info.Environment["DOTNET_EnableDiagnostics"] = "0";
        foreach (var (key, value) in env ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }
        return info;
    }

    public static async Task<CommandResult> RunAsync(string workingDirectory, string[] args, string? stdin = null, IDictionary<string, string>? env = null)
    {
        using var process = Process.Start(StartInfo(workingDirectory, args, env))!;
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
        }
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(240));
        await process.WaitForExitAsync(timeout.Token);
        return new CommandResult(process.ExitCode, await stdout, await stderr);
    }
}

internal sealed record CommandResult(int ExitCode, string Stdout, string Stderr)
{
    public JsonElement Json => JsonDocument.Parse(Stdout).RootElement;

    public CommandResult AssertSuccess()
    {
        Assert.True(ExitCode == 0, $"exit {ExitCode}: {Stderr}");
        return this;
    }
}

/// <summary>A <c>tollgate serve</c> child process on a free port; killable with SIGKILL to test durability.</summary>
internal sealed class ServerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _output = new();

    private ServerProcess(Process process, Uri baseAddress)
    {
        _process = process;
        BaseAddress = baseAddress;
        Http = new HttpClient { BaseAddress = baseAddress };
    }

    public Uri BaseAddress { get; }

    /// <summary>Every line the server wrote to stdout (its console log), from its start-up warnings on.</summary>
    public IReadOnlyCollection<string> Output => _output;

    public HttpClient Http { get; }

    public static async Task<ServerProcess> StartAsync(string workingDirectory, string db, IDictionary<string, string>? env = null)
    {
        var process = Process.Start(TollgateCommand.StartInfo(workingDirectory, ["serve", "--urls", "http://127.0.0.1:0", "--db", db], env))!;
        process.StandardInput.Close();
        var errors = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        List<string> beforeListening = [];
        while (true)
        {
            string? line = await process.StandardOutput.ReadLineAsync(timeout.Token);
            if (line is null)
            {
                throw new InvalidOperationException($"tollgate serve exited: {await errors}");
            }
            const string marker = "tollgate: listening on ";
            if (!line.StartsWith(marker, StringComparison.Ordinal))
            {
                beforeListening.Add(line);
            }
            else
            {
                // Keep draining stdout so the child never blocks on a full pipe; tests read the log lines.
                var server = new ServerProcess(process, new Uri(line[marker.Length..].Split(' ')[0]));
                beforeListening.ForEach(server._output.Enqueue);
                _ = Task.Run(async () =>
                {
                    while (await process.StandardOutput.ReadLineAsync(CancellationToken.None) is { } next)
                    {
                        server._output.Enqueue(next);
                    }
                });
                return server;
            }
        }
    }

    /// <summary>
    /// SIGTERM, what <c>systemctl stop</c> and <c>docker stop</c> send: the server stops taking requests, finishes the
    /// ones it has and exits. Its exit code, or null if it was still running after <paramref name="timeout"/>.
    /// </summary>
    public async Task<int?> TerminateAsync(TimeSpan timeout)
    {
        await ProcessSignals.SendAsync("TERM", [_process.Id]);
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(deadline.Token);
            return _process.ExitCode;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>SIGKILL: no shutdown hooks, no flushes; only what was durable survives.</summary>
    public void KillHard()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        if (!_process.HasExited)
        {
            KillHard();
        }
        _process.Dispose();
        await Task.CompletedTask;
    }
}
