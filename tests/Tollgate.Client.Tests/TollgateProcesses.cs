using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Tollgate.Client.Tests;

/// <summary>Runs the real <c>tollgate</c> binary built next to this test project.</summary>
internal static class TollgateBinary
{
#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    public static string Path { get; } = Locate();

    private static string Locate()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "Tollgate.sln")))
            dir = dir.Parent;
        if (dir is null)
            throw new InvalidOperationException("Tollgate.sln not found above the test directory");
        var path = System.IO.Path.Combine(dir.FullName, "src", "Tollgate", "bin", Configuration, "net10.0", OperatingSystem.IsWindows() ? "tollgate.exe" : "tollgate");
        return File.Exists(path) ? path : throw new InvalidOperationException($"{path} is missing; build src/Tollgate first");
    }

    public static Process Start(IEnumerable<string> args, bool redirectInput = false)
    {
        var start = new ProcessStartInfo(Path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = redirectInput,
            UseShellExecute = false,
        };
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        start.Environment.Remove("TOLLGATE_STORE");
        start.Environment["DOTNET_NOLOGO"] = "1";
        // No diagnostics IPC socket or debugger pipes left in /tmp by the children these tests kill (no test attaches to one).
        start.Environment["DOTNET_EnableDiagnostics"] = "0";
        return Process.Start(start)!;
    }

    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(IEnumerable<string> args, string? stdin = null)
    {
        using var process = Start(args, redirectInput: true);
        if (stdin is not null)
            await process.StandardInput.WriteAsync(stdin);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        // Generous: twenty .NET processes starting at once on a loaded 2-core machine take a while.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(240));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }
}

/// <summary>A real Tollgate server process (<c>tollgate serve</c>) on a fresh SQLite database, on 127.0.0.1.</summary>
public sealed class TollgateServerFixture : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private Process? _server;

    public string Db => $"sqlite:{_dir.File("tollgate.db")}";

    public Uri BaseAddress { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var user = await TollgateBinary.RunAsync(["user", "create", "--email", "user@example.com", "--name", "User", "--db", Db], "correct horse battery staple\n");
        Assert.True(user.ExitCode == 0, user.Stderr);

        _server = TollgateBinary.Start(["serve", "--urls", "http://127.0.0.1:0", "--db", Db]);
        _ = _server.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (true)
        {
            var line = await _server.StandardOutput.ReadLineAsync(timeout.Token) ?? throw new InvalidOperationException("tollgate serve exited");
            const string marker = "tollgate: listening on ";
            if (line.StartsWith(marker, StringComparison.Ordinal))
            {
                BaseAddress = new Uri(line[marker.Length..].Split(' ')[0]);
                break;
            }
        }
        _ = Task.Run(async () =>
        {
            while (await _server.StandardOutput.ReadLineAsync() is not null)
            {
            }
        });
    }

    /// <summary>Creates a confidential security profile with the given refresh policy; returns its id and secret.</summary>
    public async Task<(string ClientId, string ClientSecret)> CreateProfileAsync(string policy, string returnUrl)
    {
        var created = await TollgateBinary.RunAsync(["profile", "create", "--name", $"client tests {policy}", "--return-url", returnUrl, "--refresh-policy", policy, "--db", Db]);
        Assert.True(created.ExitCode == 0, created.Stderr);
        using var json = JsonDocument.Parse(created.Stdout);
        return (json.RootElement.GetProperty("client_id").GetString()!, json.RootElement.GetProperty("client_secret").GetString()!);
    }

    public async Task<string> IssueCodeAsync(string clientId, string returnUrl)
    {
        var issued = await TollgateBinary.RunAsync(["code", "issue", "--client-id", clientId, "--return-url", returnUrl, "--user", "user@example.com", "--db", Db]);
        Assert.True(issued.ExitCode == 0, issued.Stderr);
        return issued.Stdout.Trim();
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            if (!_server.HasExited)
                _server.Kill();
            await _server.WaitForExitAsync();
            _server.Dispose();
        }
        _dir.Dispose();
    }
}

/// <summary>
/// A counting pass-through proxy in front of the real server's token endpoint: the client's stored token URL points
/// here, so the test sees every token request that reaches the server and every answer it gets.
/// </summary>
internal sealed class CountingProxy : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly HttpClient _upstream = new();
    private int _refreshRequests;

    private CountingProxy(WebApplication app) => _app = app;

    public Uri TokenEndpoint { get; private set; } = null!;

    public int RefreshRequests => Volatile.Read(ref _refreshRequests);

    /// <summary><see cref="Stopwatch.GetTimestamp"/> when the last refresh request arrived.</summary>
    public long LastRefreshAt { get; private set; }

    /// <summary>The refresh token in the server's last successful answer.</summary>
    public string? LastIssuedRefreshToken { get; private set; }

    public ConcurrentQueue<string> Errors { get; } = new();

    public static async Task<CountingProxy> StartAsync(Uri upstreamBase)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var proxy = new CountingProxy(app);
        var upstream = new Uri(upstreamBase, "/auth/o2/token");
        app.MapPost("/auth/o2/token", async (HttpContext context) =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            var form = body.ToArray();
            if (System.Text.Encoding.ASCII.GetString(form).Contains("grant_type=refresh_token", StringComparison.Ordinal))
            {
                proxy.LastRefreshAt = Stopwatch.GetTimestamp();
                Interlocked.Increment(ref proxy._refreshRequests);
            }
            using var request = new HttpRequestMessage(HttpMethod.Post, upstream) { Content = new ByteArrayContent(form) };
            request.Content.Headers.TryAddWithoutValidation("Content-Type", context.Request.ContentType);
            using var response = await proxy._upstream.SendAsync(request);
            var answer = await response.Content.ReadAsByteArrayAsync();
            if (!response.IsSuccessStatusCode)
            {
                proxy.Errors.Enqueue(System.Text.Encoding.UTF8.GetString(answer));
            }
            else
            {
                using var json = JsonDocument.Parse(answer);
                if (json.RootElement.TryGetProperty("refresh_token", out var issued))
                    proxy.LastIssuedRefreshToken = issued.GetString();
            }
            context.Response.StatusCode = (int)response.StatusCode;
            context.Response.ContentType = response.Content.Headers.ContentType?.ToString();
            await context.Response.Body.WriteAsync(answer);
        });
        await app.StartAsync();
        var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        proxy.TokenEndpoint = new Uri(address, "/auth/o2/token");
        return proxy;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.DisposeAsync();
        _upstream.Dispose();
    }
}
