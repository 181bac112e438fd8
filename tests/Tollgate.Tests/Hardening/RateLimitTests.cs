using System.Net;
using Tollgate.Server.Audit;
using Tollgate.Server.Storage;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Hardening;

/// <summary>Throttling: 429, Retry-After and the protocol's JSON, per client (profile or default), per address, and on failed authentication.</summary>
public sealed class RateLimitTests
{
    private const string Scope = "videocentral::reporting";

    private static Task<TokenReply> ClientCredentialsAsync(TollgateHost host, Server.Admin.CreatedProfile profile, string? secret = null) =>
        host.PostTokenAsync(("grant_type", "client_credentials"), ("scope", Scope),
            ("client_id", profile.ClientId), ("client_secret", secret ?? profile.ClientSecret));

    private static void AssertThrottled(TokenReply reply)
    {
        reply.AssertError(HttpStatusCode.TooManyRequests, "slow_down");
        Assert.True(int.Parse(reply.Headers.GetValues("Retry-After").Single(), System.Globalization.CultureInfo.InvariantCulture) >= 1);
    }

    [Theory, Stores]
    public async Task A_profiles_own_limit_throttles_that_client_only(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var limited = await host.CreateProfileAsync(scopes: [Scope]);
        var other = await host.CreateProfileAsync(scopes: [Scope]);
        Assert.True(await host.Store.SetProfileRateLimitAsync(limited.ClientId, 3, CancellationToken.None));
        await Task.Delay(host.Options.ProfileCacheRefreshMilliseconds * 2);

        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await ClientCredentialsAsync(host, limited)).Status);
        }
        var refused = await ClientCredentialsAsync(host, limited);

        AssertThrottled(refused);
        Assert.Contains("3 token requests a minute", refused.Description, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await ClientCredentialsAsync(host, other)).Status);
    }

    [Theory, Stores]
    public async Task The_default_per_client_limit_applies_unless_a_profile_says_unlimited(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store, o => o.RateLimits.TokenRequestsPerClientPerMinute = 2);
        var ordinary = await host.CreateProfileAsync(scopes: [Scope]);
        var unlimited = await host.CreateProfileAsync(scopes: [Scope]);
        await host.Store.SetProfileRateLimitAsync(unlimited.ClientId, 0, CancellationToken.None);
        await Task.Delay(host.Options.ProfileCacheRefreshMilliseconds * 2);

        await ClientCredentialsAsync(host, ordinary);
        await ClientCredentialsAsync(host, ordinary);
        AssertThrottled(await ClientCredentialsAsync(host, ordinary));
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await ClientCredentialsAsync(host, unlimited)).Status);
        }
    }

    [Fact]
    public async Task The_per_address_limit_throttles_before_the_request_is_read()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite, o => o.RateLimits.TokenRequestsPerIpPerMinute = 2);
        var profile = await host.CreateProfileAsync(scopes: [Scope]);

        await ClientCredentialsAsync(host, profile);
        await ClientCredentialsAsync(host, profile);
        var refused = await host.PostRawAsync("not even a form", "text/plain");

        AssertThrottled(refused);
        Assert.Equal(HttpStatusCode.OK, (await host.GetAsync("/healthz")).Status);
    }

    [Fact]
    public async Task Failed_authentications_from_one_address_are_throttled_even_when_the_guess_is_right()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite, o => o.RateLimits.FailedAuthenticationsPerIpPerMinute = 5);
        var profile = await host.CreateProfileAsync(scopes: [Scope]);

        for (int i = 0; i < 5; i++)
        {
            (await ClientCredentialsAsync(host, profile, secret: new string('x', 64))).AssertError(HttpStatusCode.Unauthorized, "invalid_client");
        }
        var refused = await ClientCredentialsAsync(host, profile);

        AssertThrottled(refused);
        Assert.Contains("failed client authentications", refused.Description, StringComparison.Ordinal);
        var audit = host.Services.GetAudit();
        await audit.FlushAsync(TimeSpan.FromSeconds(5));
        var events = await host.Store.ListAuditEventsAsync(new AuditQuery(null, profile.ClientId, AuditEvents.ClientAuthenticationFailed, 100), CancellationToken.None);
        Assert.Equal(5, events.Count);
    }

    [Fact]
    public async Task The_set_rate_limit_command_sets_and_clears_a_profiles_limit()
    {
        string directory = TempDirectory.Create();
        try
        {
            string db = "sqlite:" + Path.Combine(directory, "tollgate.db");
            var created = (await TollgateCommand.RunAsync(directory, ["profile", "create", "--name", "A", "--return-url", "https://app.example/cb", "--db", db])).AssertSuccess();
            string clientId = created.Json.GetProperty("client_id").GetString()!;

            var set = (await TollgateCommand.RunAsync(directory, ["profile", "set-rate-limit", "--client-id", clientId, "--per-minute", "120", "--db", db])).AssertSuccess();
            Assert.Equal(120, set.Json.GetProperty("rate_limit_per_minute").GetInt32());
            var cleared = (await TollgateCommand.RunAsync(directory, ["profile", "set-rate-limit", "--client-id", clientId, "--default", "--db", db])).AssertSuccess();
            Assert.Equal(System.Text.Json.JsonValueKind.Null, cleared.Json.GetProperty("rate_limit_per_minute").ValueKind);
            var both = await TollgateCommand.RunAsync(directory, ["profile", "set-rate-limit", "--client-id", clientId, "--per-minute", "1", "--default", "--db", db]);
            var negative = await TollgateCommand.RunAsync(directory, ["profile", "set-rate-limit", "--client-id", clientId, "--per-minute", "-1", "--db", db]);
            var unknown = await TollgateCommand.RunAsync(directory, ["profile", "set-rate-limit", "--client-id", "nobody", "--per-minute", "1", "--db", db]);

            Assert.Equal(2, both.ExitCode);
            Assert.Equal(2, negative.ExitCode);
            Assert.Equal(1, unknown.ExitCode);
            Assert.Single(unknown.Stderr.Trim().Split('\n'));
            var audit = (await TollgateCommand.RunAsync(directory, ["audit", "--event", AuditEvents.RateLimitChanged, "--db", db])).AssertSuccess();
            Assert.Equal(2, audit.Stdout.Trim().Split('\n').Length);
        }
        finally
        {
            TempDirectory.Delete(directory);
        }
    }
}

internal static class HostServices
{
    public static AuditTrail GetAudit(this IServiceProvider services) =>
        (AuditTrail)services.GetService(typeof(AuditTrail))!;
}
