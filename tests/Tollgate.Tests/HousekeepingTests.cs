using System.Net;
using Tollgate.Server.Admin;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests;

/// <summary>The prune job: what it deletes, what it keeps, and that what it keeps still works.</summary>
public sealed class HousekeepingTests
{
    private static (string, string?)[] Exchange(CreatedProfile profile, string code) =>
        TollgateHost.WithClient(profile, ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl));

    [Theory, Stores]
    public async Task Prune_deletes_expired_codes_consumed_tokens_and_revoked_grants_past_retention_and_keeps_live_ones(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store, o => o.PruneRetentionSeconds = 3600);
        var profile = await host.CreateProfileAsync(refreshPolicy: "rotate");
        var user = await host.CreateUserAsync();

        // A family rotated once (its first token is now consumed), a grant revoked by a code replay, a code never used.
        string first = await host.IssueCodeAsync(profile, user);
        var tokens = await host.PostTokenAsync(Exchange(profile, first));
        var rotated = await host.RefreshAsync(profile, tokens.RefreshToken);
        string replayed = await host.IssueCodeAsync(profile, user);
        Assert.Equal(HttpStatusCode.OK, (await host.PostTokenAsync(Exchange(profile, replayed))).Status);
        Assert.Equal(HttpStatusCode.BadRequest, (await host.PostTokenAsync(Exchange(profile, replayed))).Status);
        await host.IssueCodeAsync(profile, user);

        // Inside the retention nothing goes: replays must still be recognised.
        host.Clock.Advance(TimeSpan.FromMinutes(30));
        var early = await host.Housekeeping.RunOnceAsync(CancellationToken.None);
        Assert.Equal(0, early.Total);

        host.Clock.Advance(TimeSpan.FromHours(1));
        var pruned = await host.Housekeeping.RunOnceAsync(CancellationToken.None);

        Assert.False(pruned.Skipped);
        Assert.Equal(3, pruned.Codes);
        Assert.Equal(1, pruned.RefreshTokens);
        Assert.Equal(1, pruned.Grants);
        // The live family is untouched: its newest token still rotates.
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, rotated.RefreshToken)).Status);
        Assert.Equal(0, (await host.Housekeeping.RunOnceAsync(CancellationToken.None)).Total);
    }

    [Theory, Stores]
    public async Task Prune_works_in_small_batches_until_nothing_is_left(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store, o => (o.PruneBatchSize, o.PruneRetentionSeconds) = (10, 60));
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        for (int i = 0; i < 25; i++)
        {
            await host.IssueCodeAsync(profile, user);
        }
        host.Clock.Advance(TimeSpan.FromHours(1));
        var progress = new List<long>();

        var result = await host.Store.PruneAsync(
            new Server.Storage.PrunePolicy(host.Clock.GetUtcNow(), TimeSpan.FromMinutes(1), 10), p => progress.Add(p.Codes), CancellationToken.None);

        Assert.Equal(25, result.Codes);
        Assert.Equal(3, result.Batches);
        Assert.Equal([10L, 20L, 25L], progress);
    }

    [Theory, Stores]
    public async Task Pruning_a_revoked_grant_deletes_every_refresh_token_it_had_even_after_earlier_prunes_cut_its_chain(StoreKind store)
    {
        // On SQLite a rotation's successor is found through the token it replaced, not through an index by grant
        // (schema v6); a prune that deletes the replaced token must leave the rest of the chain findable.
        await using var host = await TollgateHost.StartAsync(store, o => o.PruneRetentionSeconds = 3600);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        var second = await host.RefreshAsync(profile, tokens.RefreshToken);
        var third = await host.RefreshAsync(profile, second.RefreshToken);
        var thirdAgain = await host.RefreshAsync(profile, second.RefreshToken); // inside the grace window: a second successor
        Assert.Equal(HttpStatusCode.OK, thirdAgain.Status);
        host.Clock.Advance(TimeSpan.FromHours(2));
        Assert.Equal(2, (await host.Housekeeping.RunOnceAsync(CancellationToken.None)).RefreshTokens);
        var fourth = await host.RefreshAsync(profile, third.RefreshToken);
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, fourth.RefreshToken)).Status);
        host.Clock.Advance(TimeSpan.FromMinutes(5));
        (await host.RefreshAsync(profile, third.RefreshToken)).AssertError(HttpStatusCode.BadRequest, "invalid_grant"); // reuse: revoked
        Assert.Equal(4, Rows(host.Snapshot(), "refresh_tokens")); // third, fourth, fourth's successor, thirdAgain

        host.Clock.Advance(TimeSpan.FromHours(2));
        var pruned = await host.Housekeeping.RunOnceAsync(CancellationToken.None);

        Assert.Equal(1, pruned.Grants);
        Assert.Equal(0, Rows(host.Snapshot(), "refresh_tokens"));
        Assert.Equal(0, Rows(host.Snapshot(), "grants"));
    }

    [Theory, Stores]
    public async Task Deleting_a_profile_deletes_every_refresh_token_of_its_rotated_families(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        var (other, otherTokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        string current = tokens.RefreshToken;
        for (int i = 0; i < 5; i++)
        {
            current = (await host.RefreshAsync(profile, current)).RefreshToken;
        }
        var replay = await host.RefreshAsync(profile, tokens.RefreshToken); // inside the grace window: one more chain
        Assert.Equal(HttpStatusCode.OK, replay.Status);
        Assert.Equal(8, Rows(host.Snapshot(), "refresh_tokens"));

        Assert.True(await host.Store.DeleteProfileAsync(profile.ClientId, CancellationToken.None));

        Assert.Equal(1, Rows(host.Snapshot(), "refresh_tokens")); // the other client's token, untouched
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(other, otherTokens.RefreshToken)).Status);
    }

    [Theory, Stores]
    public async Task Pruning_a_grant_deletes_the_code_it_came_from_so_a_late_replay_cannot_revoke_a_newer_grant(StoreKind store)
    {
        // SQLite gives a new grant the id of a deleted newest one, and since schema v7 a code's link to its grant has
        // no foreign key: a redeemed code left behind by the prune would name the next grant.
        await using var host = await TollgateHost.StartAsync(store, o => o.PruneRetentionSeconds = 60);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string code = await host.IssueCodeAsync(profile, user);
        Assert.Equal(HttpStatusCode.OK, (await host.PostTokenAsync(Exchange(profile, code))).Status);
        (await host.PostTokenAsync(Exchange(profile, code))).AssertError(HttpStatusCode.BadRequest, "invalid_grant"); // revokes the grant
        host.Clock.Advance(TimeSpan.FromSeconds(61)); // the revocation is past retention; the code has not expired yet

        var pruned = await host.Housekeeping.RunOnceAsync(CancellationToken.None);
        var newer = await host.PostTokenAsync(Exchange(profile, await host.IssueCodeAsync(profile, user)));
        var lateReplay = await host.PostTokenAsync(Exchange(profile, code));

        Assert.Equal((0, 1), (pruned.Codes, pruned.Grants));
        lateReplay.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, newer.RefreshToken)).Status);
        Assert.Equal(1, Rows(host.Snapshot(), "authorization_codes")); // the newer grant's
    }

    private static int Rows(string snapshot, string table) =>
        snapshot.Split('\n').SkipWhile(line => line.Trim() != $"[{table}]").Skip(1).TakeWhile(line => !line.StartsWith('[') && line.Length > 0).Count();

    [Theory, Stores]
    public async Task A_consumed_token_replayed_after_it_was_pruned_is_refused_without_revoking_its_family(StoreKind store)
    {
        // What retention buys, made visible: after it, a replay is merely unknown (documented in docs/multi-node.md).
        await using var host = await TollgateHost.StartAsync(store, o => o.PruneRetentionSeconds = 60);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        var rotated = await host.RefreshAsync(profile, tokens.RefreshToken);
        host.Clock.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(1, (await host.Housekeeping.RunOnceAsync(CancellationToken.None)).RefreshTokens);

        var replay = await host.RefreshAsync(profile, tokens.RefreshToken);

        replay.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, rotated.RefreshToken)).Status);
    }

    [Theory, Stores]
    public async Task A_hundred_concurrent_rotations_of_one_token_rotate_it_once_and_all_get_a_successor(StoreKind store)
    {
        // Hydra #3604: concurrent refreshes of one family must not fail with serialization errors. Here they queue on
        // the token's row (or the single SQLite writer): one rotates, the rest are replays inside the grace window.
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        var hash = Server.Crypto.Secrets.StoreKey(tokens.RefreshToken);
        var now = host.Clock.GetUtcNow();
        long profileRow = (await host.Store.FindProfileAsync(profile.ClientId, CancellationToken.None))!.RowId;

        var rotations = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => Task.Run(() => host.Store.RotateRefreshTokenAsync(
            hash, Server.Crypto.Secrets.StoreKey(Server.Crypto.Secrets.NewRefreshToken(now)), profileRow, now, TimeSpan.FromSeconds(30), CancellationToken.None))));
        var outcomes = rotations.Select(r => r.Outcome).ToList();

        Assert.Single(outcomes, o => o == Server.Storage.RotationOutcome.Rotated);
        Assert.Equal(99, outcomes.Count(o => o == Server.Storage.RotationOutcome.ReplayedWithinGrace));
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, tokens.RefreshToken)).Status);
    }
}
