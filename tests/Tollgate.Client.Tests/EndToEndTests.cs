using System.Diagnostics;
using Tollgate.Tests.Infrastructure;
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
        // SIGKILL at random points of `tollgate token` runs; after each, the store must hold a working refresh token
        // (StopTally.CheckAsync says why that holds even where the kill lost a rotated token).
        var (store, proxy) = await LoginAsync(policy);
        await using var _ = proxy;
        using var http = TokenClient.CreateHttpClient();
        var random = new Random(42);

        var (untilRefresh, untilExit) = await CalibrateAsync(store, proxy);

        var tally = new StopTally(proxy, rotates: policy == "rotate");
        for (var i = 0; i < kills; i++)
        {
            await ExpireAccessTokenAsync(store);
            var refreshesBefore = proxy.RefreshRequests;
            bool finished;
            using (var victim = TollgateBinary.Start(["token", "--store", store.Path]))
            {
                await Task.Delay(PickStopPoint(random, untilRefresh, untilExit));
                try
                {
                    victim.Kill(); // SIGKILL, to this process's own PID
                }
                catch (InvalidOperationException)
                {
                }
                await victim.WaitForExitAsync();
                finished = victim.ExitCode == 0;
            }
            await tally.CheckAsync(store, finished, refreshesBefore, http);
        }

        output.WriteLine($"{policy}: {kills} kills: {tally} (calibration: refresh at {untilRefresh.TotalMilliseconds:0} ms, exit at {untilExit.TotalMilliseconds:0} ms)");
        Assert.Empty(proxy.Errors);
        Assert.Equal(kills, tally.Total);
    }

    [PowerCutFact]
    public async Task A_client_whose_disk_loses_power_at_random_points_during_refreshes_always_keeps_a_working_refresh_token()
    {
        // As above, but the store's disk loses power instead of the process dying: every write `tollgate token` had not
        // fsynced is gone too. Each round puts the store on a fresh power-cut disk holding what the last round's disk
        // kept, cuts the power at a random point of a refresh, and then refreshes from whatever survived.
        const int Cuts = 30;
        var (login, proxy) = await LoginAsync("rotate");
        await using var _ = proxy;
        using var http = TokenClient.CreateHttpClient();
        var random = new Random(7);
        string kept = login.Path;
        (TimeSpan UntilRefresh, TimeSpan UntilExit)? timing = null;
        var tally = new StopTally(proxy, rotates: true);
        for (var i = 0; i < Cuts; i++)
        {
            await using var disk = await PowerCutDisk.MountAsync(_dir.File($"power/{i}"));
            File.Copy(kept, Path.Combine(disk.Backing, "credentials"));
            File.Copy(kept + ".key", Path.Combine(disk.Backing, "credentials.key"));
            var store = new FileTokenStore(Path.Combine(disk.MountPoint, "credentials"));
            // Calibrated on this kind of disk, whose writes are slower than a plain one's.
            timing ??= await CalibrateAsync(store, proxy);
            await ExpireAccessTokenAsync(store);
            var refreshesBefore = proxy.RefreshRequests;
            bool finished;
            using (var victim = TollgateBinary.Start(["token", "--store", store.Path]))
            {
                await Task.Delay(PickStopPoint(random, timing.Value.UntilRefresh, timing.Value.UntilExit));
                await disk.CutPowerAsync();
                finished = victim.HasExited && victim.ExitCode == 0;
                try
                {
                    victim.Kill();
                }
                catch (InvalidOperationException)
                {
                }
                await victim.WaitForExitAsync();
            }
            await disk.UnmountAsync();

            // What the disk kept is a whole store (never torn), and its refresh token works.
            kept = Path.Combine(disk.Backing, "credentials");
            await tally.CheckAsync(new FileTokenStore(kept), finished, refreshesBefore, http);
        }
        output.WriteLine($"{Cuts} power cuts: {tally} (calibration: refresh at {timing!.Value.UntilRefresh.TotalMilliseconds:0} ms, " +
                         $"exit at {timing.Value.UntilExit.TotalMilliseconds:0} ms)");
        Assert.Empty(proxy.Errors);
        Assert.Equal(Cuts, tally.Total);
    }

    /// <summary>Where each stopped <c>tollgate token</c> run left its store, counted, and the check every stop must pass.</summary>
    private sealed class StopTally(CountingProxy proxy, bool rotates)
    {
        private int _beforeRefresh, _answerLost, _stored, _finished;

        public int Total => _beforeRefresh + _answerLost + _stored + _finished;

        /// <summary>
        /// Counts the stop, then refreshes from what the store holds (the same library code as the CLI): the store must
        /// read back whole and its refresh token must work. Where the stop lost the server's answer after it rotated the
        /// refresh token, the store still holds the previous one; the server accepts it again within its rotation grace
        /// window (30 s) and the refresh recovers. Without that window such a stop would cost the grant.
        /// </summary>
        public async Task CheckAsync(FileTokenStore store, bool finished, int refreshesBefore, HttpClient http)
        {
            var storedRefreshToken = (await store.ReadAsync())!.RefreshToken; // never corrupt
            if (finished)
                _finished++;
            else if (proxy.RefreshRequests == refreshesBefore)
                _beforeRefresh++;
            else if (rotates && storedRefreshToken != proxy.LastIssuedRefreshToken)
                _answerLost++;
            else
                _stored++;
            await ExpireAccessTokenAsync(store);
            var token = await new AccessTokenProvider(store, http).GetAccessTokenAsync();
            Assert.StartsWith("Atza|", token, StringComparison.Ordinal);
        }

        public override string ToString() =>
            $"before the refresh request {_beforeRefresh}, rotated token lost before it was stored {_answerLost}, " +
            $"during or after the store write {_stored}, finished first {_finished}";
    }

    /// <summary>
    /// Three unhurried runs of <c>tollgate token</c> on <paramref name="store"/>: when, after its start, the refresh request
    /// reaches the server, and when the run is over.
    /// </summary>
    private static async Task<(TimeSpan UntilRefresh, TimeSpan UntilExit)> CalibrateAsync(FileTokenStore store, CountingProxy proxy)
    {
        TimeSpan untilRefresh = TimeSpan.Zero, untilExit = TimeSpan.Zero;
        for (var i = 0; i < 3; i++)
        {
            await ExpireAccessTokenAsync(store);
            var started = Stopwatch.GetTimestamp();
            Assert.Equal(0, (await TollgateBinary.RunAsync(["token", "--store", store.Path])).ExitCode);
            untilExit = Stopwatch.GetElapsedTime(started);
            untilRefresh = Stopwatch.GetElapsedTime(started, proxy.LastRefreshAt);
        }
        return (untilRefresh, untilExit);
    }

    /// <summary>Most stop points fall around the refresh (request, answer, store write); the rest anywhere in the run.</summary>
    private static TimeSpan PickStopPoint(Random random, TimeSpan untilRefresh, TimeSpan untilExit) =>
        TimeSpan.FromMilliseconds(Math.Max(0, random.Next(4) == 0
            ? random.NextDouble() * untilExit.TotalMilliseconds
            : untilRefresh.TotalMilliseconds - 30 + (random.NextDouble() * ((untilExit - untilRefresh).TotalMilliseconds + 40))));
}
