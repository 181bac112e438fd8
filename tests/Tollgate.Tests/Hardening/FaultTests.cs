using System.Collections.Concurrent;
using System.Net;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Hardening;

/// <summary>The store becomes unavailable under load: the server answers 503 temporarily_unavailable, recovers by itself, loses nothing.</summary>
public sealed class FaultTests
{
    private const string Scope = "videocentral::reporting";

    [Theory, Stores]
    public async Task A_store_that_goes_away_mid_load_gets_503s_then_service_resumes_by_itself_with_nothing_lost(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store, o => o.RateLimits.FailedAuthenticationsPerIpPerMinute = 0);
        var confidential = await host.CreateProfileAsync(scopes: [Scope]);
        var user = await host.CreateUserAsync();
        var codes = new ConcurrentQueue<string>();
        for (int i = 0; i < 60; i++)
        {
            codes.Enqueue(await host.IssueCodeAsync(confidential, user));
        }
        const int workers = 6;
        var chains = new string[workers];
        var rotating = new Server.Admin.CreatedProfile[workers];
        for (int w = 0; w < workers; w++)
        {
            var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
            rotating[w] = profile;
            chains[w] = tokens.RefreshToken;
        }

        var answeredCodes = new ConcurrentBag<string>();
        var unansweredCodes = new ConcurrentBag<string>();
        var statuses = new ConcurrentBag<(HttpStatusCode Status, bool DuringOutage)>();
        var unexpected = new ConcurrentBag<string>();
        bool outage = false;
        using var stop = new CancellationTokenSource();

        async Task Worker(int w)
        {
            int turn = 0;
            while (!stop.IsCancellationRequested)
            {
                TokenReply reply;
                switch (turn++ % 3)
                {
                    case 0 when codes.TryDequeue(out var code):
                        reply = await host.PostTokenAsync(TollgateHost.WithClient(confidential,
                            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl)));
                        (reply.Status == HttpStatusCode.OK ? answeredCodes : unansweredCodes).Add(code);
                        break;
                    case 1:
                        reply = await host.RefreshAsync(rotating[w], chains[w]);
                        if (reply.Status == HttpStatusCode.OK)
                        {
                            chains[w] = reply.RefreshToken;
                        }
                        break;
                    default:
                        reply = await host.PostTokenAsync(TollgateHost.WithClient(confidential, ("grant_type", "client_credentials"), ("scope", Scope)));
                        break;
                }
                statuses.Add((reply.Status, Volatile.Read(ref outage)));
                if (reply.Status == HttpStatusCode.ServiceUnavailable)
                {
                    reply.AssertError(HttpStatusCode.ServiceUnavailable, "temporarily_unavailable");
                    Assert.Equal("1", reply.Headers.GetValues("Retry-After").Single());
                }
                else if (reply.Status != HttpStatusCode.OK)
                {
                    unexpected.Add($"{(int)reply.Status} {reply.Body}");
                }
            }
        }

        var load = Enumerable.Range(0, workers).Select(w => Task.Run(() => Worker(w))).ToArray();
        await Task.Delay(TimeSpan.FromSeconds(1));
        using (host.BlockStore())
        {
            Volatile.Write(ref outage, true);
            await Task.Delay(TimeSpan.FromSeconds(7));
            Volatile.Write(ref outage, false);
        }
        await Task.Delay(TimeSpan.FromSeconds(3));
        await stop.CancelAsync();
        await Task.WhenAll(load);

        Assert.Empty(unexpected);
        Assert.Contains(statuses, s => s.Status == HttpStatusCode.ServiceUnavailable);
        Assert.DoesNotContain(statuses, s => (int)s.Status >= 500 && s.Status != HttpStatusCode.ServiceUnavailable);
        Assert.Contains(statuses, s => s.Status == HttpStatusCode.OK && s.DuringOutage); // reads (client credentials) kept working

        // Recovered by itself: the last requests succeeded, and every chain's newest refresh token still works.
        for (int w = 0; w < workers; w++)
        {
            var next = await host.RefreshAsync(rotating[w], chains[w]);
            Assert.True(next.Status == HttpStatusCode.OK, $"worker {w}: {next.Body}");
        }
        // Nothing lost: a code answered with tokens stays redeemed; one answered 503 was never redeemed and still works.
        foreach (var code in unansweredCodes)
        {
            var retry = await host.PostTokenAsync(TollgateHost.WithClient(confidential,
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl)));
            Assert.True(retry.Status == HttpStatusCode.OK, $"a code refused with 503 must still be redeemable: {retry.Body}");
        }
        Assert.NotEmpty(answeredCodes);
        var ready = await host.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, ready.Status);
    }
}
