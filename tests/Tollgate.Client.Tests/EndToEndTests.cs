using System.Diagnostics;
using Xunit.Abstractions;

namespace Tollgate.Client.Tests;

[CollectionDefinition("tollgate processes", DisableParallelization = true)]
public sealed class TollgateProcessesCollection;

/// <summary>
/// The client against a real Tollgate server process over HTTP, with the real <c>tollgate</c> CLI as separate
/// processes, for both refresh policies.
/// </summary>
[Collection("tollgate processes")]
public sealed class EndToEndTests(TollgateServerFixture server, ITestOutputHelper output) : IClassFixture<TollgateServerFixture>, IDisposable
{
    private const string ReturnUrl = "http://127.0.0.1:8765/callback";
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private async Task<(FileTokenStore Store, CountingProxy Proxy)> LoginAsync(string policy)
    {
        var (clientId, secret) = await server.CreateProfileAsync(policy, ReturnUrl);
        var code = await server.IssueCodeAsync(clientId, ReturnUrl);
        var proxy = await CountingProxy.StartAsync(server.BaseAddress);
        var store = new FileTokenStore(_dir.File($"{policy}/credentials"));
        var login = await TollgateBinary.RunAsync(
            ["login", "--client-id", clientId, "--client-secret-stdin", "--code", code, "--redirect-uri", ReturnUrl,
             "--token-url", proxy.TokenEndpoint.AbsoluteUri, "--store", store.Path],
            secret + "\n");
        Assert.True(login.ExitCode == 0, login.Stderr);
        Assert.Equal("", login.Stdout);
        return (store, proxy);
    }

    /// <summary>Makes the next <c>tollgate token</c> refresh, as if the cached access token had expired.</summary>
    private static async Task ExpireAccessTokenAsync(FileTokenStore store)
    {
        var stored = (await store.ReadAsync())!;
        await store.WriteAsync(stored with { AccessToken = null, AccessTokenExpiresAt = null });
    }

    [Theory]
    [InlineData("reuse")]
    [InlineData("rotate")]
    public async Task Twenty_concurrent_token_processes_cause_exactly_one_refresh(string policy)
    {
        var (store, proxy) = await LoginAsync(policy);
        await using var _ = proxy;

        await ExpireAccessTokenAsync(store);

        var runs = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => TollgateBinary.RunAsync(["token", "--store", store.Path])));

        Assert.All(runs, r => Assert.True(r.ExitCode == 0, r.Stderr));
        Assert.All(runs, r => Assert.Equal("", r.Stderr));
        Assert.Single(runs.Select(r => r.Stdout).Distinct());
        Assert.StartsWith("Atza|", runs[0].Stdout, StringComparison.Ordinal);
        Assert.Equal(1, proxy.RefreshRequests);
        Assert.Empty(proxy.Errors);
    }

    [Fact]
    public async Task The_printed_token_is_accepted_by_the_server()
    {
        var (store, proxy) = await LoginAsync("rotate");
        await using var _ = proxy;
        await ExpireAccessTokenAsync(store);

        var token = (await TollgateBinary.RunAsync(["token", "--store", store.Path])).Stdout.Trim();
        using var http = new HttpClient();
        using var info = await http.GetAsync(new Uri(server.BaseAddress, $"/auth/o2/tokeninfo?access_token={Uri.EscapeDataString(token)}"));

        Assert.True(info.IsSuccessStatusCode, await info.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Logout_forgets_the_credentials_and_token_then_fails_with_a_reason()
    {
        var (store, proxy) = await LoginAsync("reuse");
        await using var _ = proxy;

        var logout = await TollgateBinary.RunAsync(["logout", "--store", store.Path]);
        var token = await TollgateBinary.RunAsync(["token", "--store", store.Path]);

        Assert.Equal(0, logout.ExitCode);
        Assert.False(File.Exists(store.Path));
        Assert.Equal(1, token.ExitCode);
        Assert.Equal("", token.Stdout);
        Assert.Single(token.Stderr.TrimEnd().Split('\n'));
    }

    [Theory]
    [InlineData("rotate", 100)]
    [InlineData("reuse", 20)]
    public async Task A_client_killed_at_random_points_during_refreshes_always_leaves_a_working_refresh_token(string policy, int kills)
    {
        // Where a kill loses the server's answer after it rotated the refresh token, the store still holds the
        // previous one; the server accepts it again within its rotation grace window (30 s) and the next refresh
        // recovers. Without that window such a kill would cost the grant.
        var (store, proxy) = await LoginAsync(policy);
        await using var _ = proxy;
        using var http = TokenClient.CreateHttpClient();
        var random = new Random(42);

        // Calibrate: when (after start) the refresh request reaches the server, and when the run is over.
        TimeSpan untilRefresh = TimeSpan.Zero, untilExit = TimeSpan.Zero;
        for (var i = 0; i < 3; i++)
        {
            await ExpireAccessTokenAsync(store);
            var started = Stopwatch.GetTimestamp();
            Assert.Equal(0, (await TollgateBinary.RunAsync(["token", "--store", store.Path])).ExitCode);
            untilExit = Stopwatch.GetElapsedTime(started);
            untilRefresh = Stopwatch.GetElapsedTime(started, proxy.LastRefreshAt);
        }

        int beforeRefresh = 0, answerLost = 0, afterPersist = 0, finished = 0;
        for (var i = 0; i < kills; i++)
        {
            await ExpireAccessTokenAsync(store);
            var refreshesBefore = proxy.RefreshRequests;
            // Most kill points fall around the refresh (request, answer, store write); the rest anywhere in the run.
            var killAt = random.Next(4) == 0
                ? random.NextDouble() * untilExit.TotalMilliseconds
                : untilRefresh.TotalMilliseconds - 30 + (random.NextDouble() * ((untilExit - untilRefresh).TotalMilliseconds + 40));
            using (var victim = TollgateBinary.Start(["token", "--store", store.Path]))
            {
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Max(0, killAt)));
                try
                {
                    victim.Kill(); // SIGKILL, to this process's own PID
                }
                catch (InvalidOperationException)
                {
                }
                await victim.WaitForExitAsync();
                var storedRefreshToken = (await store.ReadAsync())!.RefreshToken; // never corrupt
                if (victim.ExitCode == 0)
                    finished++;
                else if (proxy.RefreshRequests == refreshesBefore)
                    beforeRefresh++;
                else if (policy == "rotate" && storedRefreshToken != proxy.LastIssuedRefreshToken)
                    answerLost++;
                else
                    afterPersist++;
            }

            // The refresh token in the store must work: refresh from it (same library code as the CLI).
            await ExpireAccessTokenAsync(store);
            var token = await new AccessTokenProvider(store, http).GetAccessTokenAsync();
            Assert.StartsWith("Atza|", token, StringComparison.Ordinal);
        }

        output.WriteLine($"{policy}: {kills} kills: before the refresh request {beforeRefresh}, answer lost before the store write {answerLost}, " +
                         $"during or after the write {afterPersist}, finished first {finished} (calibration: refresh at {untilRefresh.TotalMilliseconds:0} ms, exit at {untilExit.TotalMilliseconds:0} ms)");
        Assert.Empty(proxy.Errors);
        Assert.Equal(kills, beforeRefresh + answerLost + afterPersist + finished);
    }
}
