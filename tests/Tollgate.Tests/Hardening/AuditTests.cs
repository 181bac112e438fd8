using System.Net;
using Tollgate.Server.Audit;
using Tollgate.Server.Storage;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Hardening;

/// <summary>The audit trail: what is recorded for each security event, that no secret is, and the <c>tollgate audit</c> command.</summary>
public sealed class AuditTests
{
    private static async Task<IReadOnlyList<AuditRecord>> EventsAsync(TollgateHost host, string? eventName = null)
    {
        await host.Services.GetAudit().FlushAsync(TimeSpan.FromSeconds(10));
        return await host.Store.ListAuditEventsAsync(new AuditQuery(null, null, eventName, 1000), CancellationToken.None);
    }

    [Theory, Stores]
    public async Task A_failed_client_authentication_is_recorded_with_time_client_address_and_request_id_but_no_secret(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(scopes: ["videocentral::reporting"]);
        string wrongSecret = "amzn1.oa2-cs.v1." + new string('e', 64);

        var reply = await host.PostTokenAsync(("grant_type", "client_credentials"), ("scope", "videocentral::reporting"),
            ("client_id", profile.ClientId), ("client_secret", wrongSecret));

        reply.AssertError(HttpStatusCode.Unauthorized, "invalid_client");
        var recorded = Assert.Single(await EventsAsync(host, AuditEvents.ClientAuthenticationFailed)).Event;
        Assert.Equal(profile.ClientId, recorded.ClientId);
        Assert.Equal("127.0.0.1", recorded.Ip);
        Assert.Equal(reply["request_id"], recorded.RequestId);
        Assert.Equal(host.Clock.GetUtcNow(), recorded.At);
        string all = host.Snapshot(includeAudit: true);
        Assert.DoesNotContain(wrongSecret, all, StringComparison.Ordinal);
        Assert.DoesNotContain(profile.ClientSecret!, all, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task A_token_pasted_as_client_id_is_recorded_as_a_short_hash(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync();

        await host.PostTokenAsync(("grant_type", "refresh_token"), ("refresh_token", tokens.RefreshToken), ("client_id", tokens.RefreshToken));

        var recorded = Assert.Single(await EventsAsync(host, AuditEvents.ClientAuthenticationFailed)).Event;
        Assert.StartsWith("sha256:", recorded.ClientId, StringComparison.Ordinal);
        Assert.DoesNotContain(tokens.RefreshToken[5..], host.Snapshot(includeAudit: true), StringComparison.Ordinal);
        _ = profile;
    }

    [Theory, Stores]
    public async Task A_replayed_code_is_recorded_with_its_user(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string code = await host.IssueCodeAsync(profile, user);
        var form = TollgateHost.WithClient(profile, ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl));
        Assert.Equal(HttpStatusCode.OK, (await host.PostTokenAsync(form)).Status);

        var replay = await host.PostTokenAsync(form);

        replay.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        var recorded = Assert.Single(await EventsAsync(host, AuditEvents.CodeReplay)).Event;
        Assert.Equal(user.UserId, recorded.UserId);
        Assert.Equal(profile.ClientId, recorded.ClientId);
        Assert.Equal(replay["request_id"], recorded.RequestId);
        Assert.DoesNotContain(code, host.Snapshot(includeAudit: true), StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task A_revoked_token_family_is_recorded(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, tokens.RefreshToken)).Status);
        host.Clock.Advance(TimeSpan.FromSeconds(host.Options.RotationGraceSeconds + 1));

        (await host.RefreshAsync(profile, tokens.RefreshToken)).AssertError(HttpStatusCode.BadRequest, "invalid_grant");

        var recorded = Assert.Single(await EventsAsync(host, AuditEvents.FamilyRevoked)).Event;
        Assert.Equal(profile.ClientId, recorded.ClientId);
        Assert.StartsWith("amzn1.account.", recorded.UserId, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_audit_command_lists_and_filters_events_as_json_lines()
    {
        string directory = TempDirectory.Create();
        try
        {
            string db = "sqlite:" + Path.Combine(directory, "tollgate.db");
            await using (var store = Server.Storage.Sqlite.SqliteTokenStore.Open(Path.Combine(directory, "tollgate.db")))
            {
                await store.MigrateAsync(CancellationToken.None);
                var now = DateTimeOffset.UtcNow;
                await store.AppendAuditEventsAsync(
                [
                    new AuditEvent(now.AddDays(-3), AuditEvents.ClientAuthenticationFailed, "client-a", null, "10.0.0.1", "r1", "old"),
                    new AuditEvent(now.AddMinutes(-5), AuditEvents.ClientAuthenticationFailed, "client-b", null, "10.0.0.2", "r2", "recent"),
                    new AuditEvent(now.AddMinutes(-1), AuditEvents.CodeReplay, "client-a", "amzn1.account.X", "10.0.0.3", "r3", "replay"),
                ], CancellationToken.None);
            }

            var all = (await TollgateCommand.RunAsync(directory, ["audit", "--db", db])).AssertSuccess();
            var recent = (await TollgateCommand.RunAsync(directory, ["audit", "--since", "1h", "--db", db])).AssertSuccess();
            var byClient = (await TollgateCommand.RunAsync(directory, ["audit", "--client-id", "client-a", "--db", db])).AssertSuccess();
            var byEvent = (await TollgateCommand.RunAsync(directory, ["audit", "--event", "code_replay", "--db", db])).AssertSuccess();
            var limited = (await TollgateCommand.RunAsync(directory, ["audit", "--limit", "1", "--db", db])).AssertSuccess();
            var badSince = await TollgateCommand.RunAsync(directory, ["audit", "--since", "yesterday", "--db", db]);
            var badEvent = await TollgateCommand.RunAsync(directory, ["audit", "--event", "nope", "--db", db]);

            static string[] Lines(CommandResult r) => r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(["r3", "r2", "r1"], Lines(all).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("request_id").GetString()));
            Assert.Equal(2, Lines(recent).Length);
            Assert.Equal(2, Lines(byClient).Length);
            var replay = System.Text.Json.JsonDocument.Parse(Assert.Single(Lines(byEvent))).RootElement;
            Assert.Equal("amzn1.account.X", replay.GetProperty("user_id").GetString());
            Assert.Equal("10.0.0.3", replay.GetProperty("ip").GetString());
            Assert.Single(Lines(limited));
            Assert.Equal(2, badSince.ExitCode);
            Assert.Equal(2, badEvent.ExitCode);

            var profile = (await TollgateCommand.RunAsync(directory, ["profile", "create", "--name", "A", "--return-url", "https://app.example/cb", "--db", db])).AssertSuccess();
            string clientId = profile.Json.GetProperty("client_id").GetString()!;
            (await TollgateCommand.RunAsync(directory, ["profile", "delete", "--client-id", clientId, "--db", db])).AssertSuccess();
            var deleted = (await TollgateCommand.RunAsync(directory, ["audit", "--event", "profile_deleted", "--db", db])).AssertSuccess();
            Assert.Equal(clientId, System.Text.Json.JsonDocument.Parse(Assert.Single(Lines(deleted))).RootElement.GetProperty("client_id").GetString());
        }
        finally
        {
            TempDirectory.Delete(directory);
        }
    }

    [Fact]
    public async Task Audit_events_wait_out_a_store_outage_and_are_written_when_it_ends()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite);
        var audit = host.Services.GetAudit();
        using (var locker = host.BlockStore())
        {
            audit.Record(new AuditEvent(host.Clock.GetUtcNow(), AuditEvents.SignInFailed, null, "amzn1.account.Y", "127.0.0.1", "r", "during outage"));
            await Task.Delay(TimeSpan.FromSeconds(5));
            Assert.Equal(1, audit.Pending);
        }

        var recorded = Assert.Single(await EventsAsync(host, AuditEvents.SignInFailed));
        Assert.Equal("during outage", recorded.Event.Detail);
    }
}
