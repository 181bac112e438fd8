using System.Net;
using Tollgate.Server.Crypto;
using Tollgate.Server.Storage;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests;

public sealed class RefreshTokenGrantTests
{
    [Theory, Stores]
    public async Task Under_reuse_the_same_refresh_token_keeps_working_and_comes_back_unchanged(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync();
        Assert.Equal("reuse", profile.RefreshPolicy.ToString().ToLowerInvariant());
        string before = host.Snapshot();

        for (int i = 0; i < 5; i++)
        {
            var reply = await host.RefreshAsync(profile, tokens.RefreshToken);
            Assert.Equal(HttpStatusCode.OK, reply.Status);
            Assert.Equal(tokens.RefreshToken, reply.RefreshToken);
            Assert.NotEqual(tokens.AccessToken, reply.AccessToken);
            host.Clock.Advance(TimeSpan.FromDays(30));
        }
        // A reuse-policy refresh writes nothing: the access token is sealed, not stored.
        Assert.Equal(before, host.Snapshot());
    }

    [Theory, Stores]
    public async Task Under_rotate_each_use_returns_a_new_refresh_token(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");

        string current = tokens.RefreshToken;
        var seen = new HashSet<string> { current };
        for (int i = 0; i < 5; i++)
        {
            var reply = await host.RefreshAsync(profile, current);
            Assert.Equal(HttpStatusCode.OK, reply.Status);
            Assert.True(seen.Add(reply.RefreshToken));
            current = reply.RefreshToken;
            host.Clock.Advance(TimeSpan.FromMinutes(5));
        }
    }

    [Theory, Stores]
    public async Task Public_clients_rotate_by_default_and_confidential_clients_reuse(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);

        var (publicProfile, publicTokens) = await host.AuthorizeAsync(isPublic: true);
        var (confidential, confidentialTokens) = await host.AuthorizeAsync();
        var publicReply = await host.PostTokenAsync(
            ("grant_type", "refresh_token"), ("refresh_token", publicTokens.RefreshToken), ("client_id", publicProfile.ClientId));
        var confidentialReply = await host.RefreshAsync(confidential, confidentialTokens.RefreshToken);

        Assert.NotEqual(publicTokens.RefreshToken, publicReply.RefreshToken);
        Assert.Equal(confidentialTokens.RefreshToken, confidentialReply.RefreshToken);
    }

    [Theory, Stores]
    public async Task Replaying_a_rotated_refresh_token_inside_the_grace_window_succeeds(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        var rotated = await host.RefreshAsync(profile, tokens.RefreshToken);

        host.Clock.Advance(TimeSpan.FromSeconds(30));
        var replay = await host.RefreshAsync(profile, tokens.RefreshToken);

        Assert.Equal(HttpStatusCode.OK, replay.Status);
        // Both successors stay usable: the client keeps whichever answer it received last.
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, rotated.RefreshToken)).Status);
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, replay.RefreshToken)).Status);
    }

    [Theory, Stores]
    public async Task Reusing_a_rotated_refresh_token_after_the_grace_window_revokes_the_family(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        var rotated = await host.RefreshAsync(profile, tokens.RefreshToken);
        var newest = await host.RefreshAsync(profile, rotated.RefreshToken);

        host.Clock.Advance(TimeSpan.FromSeconds(31));
        var replay = await host.RefreshAsync(profile, tokens.RefreshToken);

        replay.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Contains("family has been revoked", replay.Description, StringComparison.Ordinal);
        (await host.RefreshAsync(profile, newest.RefreshToken)).AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        (await host.TokenInfoAsync(newest.AccessToken)).AssertError(HttpStatusCode.BadRequest, "invalid_token");
    }

    [Theory, Stores]
    public async Task The_grace_window_is_configurable(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store, o => o.RotationGraceSeconds = 5);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        await host.RefreshAsync(profile, tokens.RefreshToken);

        host.Clock.Advance(TimeSpan.FromSeconds(6));

        (await host.RefreshAsync(profile, tokens.RefreshToken)).AssertError(HttpStatusCode.BadRequest, "invalid_grant");
    }

    [Theory, Stores]
    public async Task A_refresh_token_of_another_client_is_invalid_grant(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (_, tokens) = await host.AuthorizeAsync();
        var other = await host.CreateProfileAsync();

        var reply = await host.RefreshAsync(other, tokens.RefreshToken);

        reply.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.StartsWith("The request has an invalid grant parameter : refresh_token", reply.Description, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task Under_rotate_a_refresh_token_of_another_client_changes_nothing_and_stays_usable_by_its_owner(StoreKind store)
    {
        // The rotate path checks the client inside the store's write (no read before it): a foreign client must not
        // consume the token, or anyone holding a leaked token could burn its owner's family.
        await using var host = await TollgateHost.StartAsync(store);
        var (owner, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        var other = await host.CreateProfileAsync(refreshPolicy: "rotate");
        string before = host.Snapshot();

        var foreign = await host.RefreshAsync(other, tokens.RefreshToken);
        string after = host.Snapshot();
        host.Clock.Advance(TimeSpan.FromMinutes(10)); // past the grace window: had it been consumed, this would be reuse
        var owners = await host.RefreshAsync(owner, tokens.RefreshToken);

        foreign.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Equal(before, after);
        Assert.Equal(HttpStatusCode.OK, owners.Status);
    }

    [Theory, Stores]
    public async Task A_refresh_may_narrow_the_scope_but_not_widen_it(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync(scope: "profile postal_code");

        var narrowed = await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "refresh_token"), ("refresh_token", tokens.RefreshToken), ("scope", "postal_code")));
        var widened = await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "refresh_token"), ("refresh_token", tokens.RefreshToken), ("scope", "profile profile:user_id")));

        Assert.Equal(HttpStatusCode.OK, narrowed.Status);
        Assert.Equal("postal_code", (await host.TokenInfoAsync(narrowed.AccessToken))["scope"]);
        widened.AssertError(HttpStatusCode.BadRequest, "invalid_scope");
    }

    [Theory, Stores]
    public async Task A_refresh_token_sent_raw_by_curl_data_works_as_well_as_percent_encoded(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync();
        Assert.DoesNotContain(tokens.RefreshToken[5..], c => c is '+' or '/' or '=' or '&' or '%');

        var raw = await host.PostRawAsync(
            $"grant_type=refresh_token&refresh_token={tokens.RefreshToken}&client_id={profile.ClientId}&client_secret={profile.ClientSecret}",
            "application/x-www-form-urlencoded");
        var encoded = await host.RefreshAsync(profile, tokens.RefreshToken);

        Assert.Equal(HttpStatusCode.OK, raw.Status);
        Assert.Equal(HttpStatusCode.OK, encoded.Status);
    }

    [Theory, Stores]
    public async Task Deleting_the_security_profile_invalidates_its_refresh_and_access_tokens(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store, o => o.ProfileCacheRefreshMilliseconds = 50);
        var (profile, tokens) = await host.AuthorizeAsync();

        Assert.True(await host.Store.DeleteProfileAsync(profile.ClientId, CancellationToken.None));
        await Task.Delay(300);

        (await host.RefreshAsync(profile, tokens.RefreshToken)).AssertError(HttpStatusCode.Unauthorized, "invalid_client");
        (await host.TokenInfoAsync(tokens.AccessToken)).AssertError(HttpStatusCode.BadRequest, "invalid_token");
    }

    [Theory, Stores]
    public async Task Concurrent_rotations_of_one_token_all_succeed_inside_the_grace_window(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");

        var replies = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => Task.Run(() => host.RefreshAsync(profile, tokens.RefreshToken))));

        Assert.All(replies, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.Equal(20, replies.Select(r => r.RefreshToken).Distinct().Count());
    }

    [Theory, Stores]
    public async Task Codes_and_refresh_tokens_issued_before_keys_carried_their_issue_time_still_work(StoreKind store)
    {
        // Until store keys began with the issue time (Secrets.StoreKey), codes and refresh tokens were 256 random
        // bits keyed by their SHA-256 alone. Those already in the hands of clients must keep working.
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(refreshPolicy: "rotate");
        var user = await host.CreateUserAsync();
        var profileRow = (await host.Store.FindProfileAsync(profile.ClientId, CancellationToken.None))!.RowId;
        var userRow = (await host.Store.FindUserByEmailAsync(user.Email, CancellationToken.None))!.RowId;
        var now = host.Clock.GetUtcNow();
        async Task<string> OldCodeAsync()
        {
            string code = Secrets.RandomUrlSafe(32);
            await host.Store.InsertCodeAsync(new NewCode(
                Secrets.Hash(code), profileRow, userRow, TollgateHost.ReturnUrl, "profile", null, null, now, now.AddMinutes(5)), CancellationToken.None);
            return code;
        }

        var exchanged = await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "authorization_code"), ("code", await OldCodeAsync()), ("redirect_uri", TollgateHost.ReturnUrl)));
        string oldRefreshToken = Secrets.RefreshTokenPrefix + Secrets.RandomUrlSafe(32);
        var redeemed = await host.Store.RedeemCodeAsync(
            Secrets.Hash(await OldCodeAsync()), Secrets.Hash(oldRefreshToken), profileRow,
            new RedemptionTerms(TollgateHost.ReturnUrl, null, now), CancellationToken.None);
        var rotated = await host.RefreshAsync(profile, oldRefreshToken);
        var rotatedAgain = await host.RefreshAsync(profile, rotated.RefreshToken);

        Assert.Equal(HttpStatusCode.OK, exchanged.Status);
        Assert.Equal(CodeRedemptionOutcome.Redeemed, redeemed.Outcome);
        Assert.Equal(HttpStatusCode.OK, rotated.Status);
        Assert.Equal(oldRefreshToken.Length + 8, rotated.RefreshToken.Length); // the successor carries its issue time
        Assert.Equal(HttpStatusCode.OK, rotatedAgain.Status);
    }

    [Theory, Stores]
    public async Task A_refresh_token_of_the_right_length_that_is_not_base64url_is_refused_as_unknown(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, _) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        string before = host.Snapshot();

        var reply = await host.RefreshAsync(profile, Secrets.RefreshTokenPrefix + new string('!', 51));

        reply.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Equal(before, host.Snapshot());
    }
}
