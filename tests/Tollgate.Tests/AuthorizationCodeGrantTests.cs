using System.Net;
using System.Text.RegularExpressions;
using Tollgate.Server.Admin;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests;

public sealed partial class AuthorizationCodeGrantTests
{
    [GeneratedRegex(@"^Atza\|[A-Za-z0-9_-]+$")]
    private static partial Regex AccessTokenShape();

    [GeneratedRegex(@"^Atzr\|[A-Za-z0-9_-]+$")]
    private static partial Regex RefreshTokenShape();

    private static (string, string?)[] Exchange(CreatedProfile profile, string code, string? verifier = null, string redirectUri = TollgateHost.ReturnUrl) =>
        TollgateHost.WithClient(profile, ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectUri), ("code_verifier", verifier));

    [Theory, Stores]
    public async Task Exchanging_a_code_returns_Amazon_shaped_tokens_and_headers(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string code = await host.IssueCodeAsync(profile, user);

        var reply = await host.PostTokenAsync(Exchange(profile, code));

        Assert.Equal(HttpStatusCode.OK, reply.Status);
        Assert.Matches(AccessTokenShape(), reply.AccessToken);
        Assert.Matches(RefreshTokenShape(), reply.RefreshToken);
        Assert.True(reply.AccessToken.Length <= 2048 && reply.RefreshToken.Length <= 2048);
        Assert.Equal("bearer", reply["token_type"]);
        Assert.Equal("3600", reply["expires_in"]);
        Assert.Equal("application/json; charset=UTF-8", reply.ContentType.Replace(";charset", "; charset", StringComparison.Ordinal));
        Assert.Equal("no-store", reply.Headers.CacheControl!.ToString());
        Assert.Equal("no-cache", reply.Headers.Pragma.ToString());
        Assert.True(Guid.TryParse(reply.Headers.GetValues("x-amzn-RequestId").Single(), out _));
    }

    [Theory, Stores]
    public async Task Access_token_lifetime_is_configurable(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store, o => o.AccessTokenLifetimeSeconds = 600);

        var (_, tokens) = await host.AuthorizeAsync();

        Assert.Equal("600", tokens["expires_in"]);
    }

    [Theory, Stores]
    public async Task Redeeming_a_code_twice_fails_and_revokes_every_token_issued_from_it(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string code = await host.IssueCodeAsync(profile, user);
        var first = await host.PostTokenAsync(Exchange(profile, code));
        Assert.Equal(HttpStatusCode.OK, first.Status);
        Assert.Equal(HttpStatusCode.OK, (await host.TokenInfoAsync(first.AccessToken)).Status);

        var second = await host.PostTokenAsync(Exchange(profile, code));

        second.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Contains("already been used", second.Description, StringComparison.Ordinal);
        (await host.RefreshAsync(profile, first.RefreshToken)).AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        (await host.TokenInfoAsync(first.AccessToken)).AssertError(HttpStatusCode.BadRequest, "invalid_token");
    }

    [Theory, Stores]
    public async Task A_replay_with_a_wrong_redirect_uri_or_verifier_still_revokes_what_the_code_obtained(StoreKind store)
    {
        // The replay check comes before the request's own checks: a thief holding a used code must not be able to
        // probe it without setting off the revocation, nor learn which of its parameters were wrong.
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string verifier = Pkce.NewVerifier();
        string code = await host.IssueCodeAsync(profile, user, challenge: Pkce.S256(verifier), method: "S256");
        var first = await host.PostTokenAsync(Exchange(profile, code, verifier: verifier));
        Assert.Equal(HttpStatusCode.OK, first.Status);

        var replay = await host.PostTokenAsync(Exchange(profile, code, verifier: Pkce.NewVerifier(), redirectUri: "https://thief.example/cb"));

        replay.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Contains("already been used", replay.Description, StringComparison.Ordinal);
        (await host.RefreshAsync(profile, first.RefreshToken)).AssertError(HttpStatusCode.BadRequest, "invalid_grant");
    }

    [Theory, Stores]
    public async Task A_refused_exchange_changes_nothing_in_the_store(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string code = await host.IssueCodeAsync(profile, user);
        string before = host.Snapshot();

        var wrongRedirect = await host.PostTokenAsync(Exchange(profile, code, redirectUri: TollgateHost.ReturnUrl + "?x=1"));
        var unwantedVerifier = await host.PostTokenAsync(Exchange(profile, code, verifier: Pkce.NewVerifier()));

        wrongRedirect.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        unwantedVerifier.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Equal(before, host.Snapshot());
    }

    [Theory, Stores]
    public async Task Fifty_concurrent_redemptions_of_one_code_yield_exactly_one_success(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string code = await host.IssueCodeAsync(profile, user);
        using var start = new ManualResetEventSlim();

        var racers = Enumerable.Range(0, 50).Select(_ => Task.Run(async () =>
        {
            start.Wait();
            return await host.PostTokenAsync(Exchange(profile, code));
        })).ToArray();
        start.Set();
        var replies = await Task.WhenAll(racers);

        var winners = replies.Where(r => r.Status == HttpStatusCode.OK).ToList();
        Assert.Single(winners);
        Assert.All(replies.Where(r => r.Status != HttpStatusCode.OK), r => r.AssertError(HttpStatusCode.BadRequest, "invalid_grant"));
        // The 49 replays mean the code leaked: the winner's tokens are revoked too (RFC 6749 §4.1.2).
        (await host.RefreshAsync(profile, winners[0].RefreshToken)).AssertError(HttpStatusCode.BadRequest, "invalid_grant");
    }

    [Theory, Stores]
    public async Task A_code_works_until_five_minutes_and_not_a_second_later(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string early = await host.IssueCodeAsync(profile, user);
        string late = await host.IssueCodeAsync(profile, user);

        host.Clock.Advance(TimeSpan.FromSeconds(299));
        var inTime = await host.PostTokenAsync(Exchange(profile, early));
        host.Clock.Advance(TimeSpan.FromSeconds(1));
        var tooLate = await host.PostTokenAsync(Exchange(profile, late));

        Assert.Equal(HttpStatusCode.OK, inTime.Status);
        tooLate.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Contains("expired", tooLate.Description, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task The_redirect_uri_must_be_sent_and_equal_the_one_the_code_was_issued_for(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string code = await host.IssueCodeAsync(profile, user);

        var missing = await host.PostTokenAsync(TollgateHost.WithClient(profile, ("grant_type", "authorization_code"), ("code", code)));
        var different = await host.PostTokenAsync(Exchange(profile, code, redirectUri: TollgateHost.ReturnUrl + "/"));
        var same = await host.PostTokenAsync(Exchange(profile, code));

        missing.AssertError(HttpStatusCode.BadRequest, "invalid_request");
        different.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.StartsWith("The request has an invalid grant parameter : redirect_uri", different.Description, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, same.Status);
    }

    [Theory, Stores]
    public async Task A_code_issued_to_another_client_is_invalid_grant_and_stays_usable_by_its_owner(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var owner = await host.CreateProfileAsync();
        var thief = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string code = await host.IssueCodeAsync(owner, user);

        var stolen = await host.PostTokenAsync(Exchange(thief, code));
        var rightful = await host.PostTokenAsync(Exchange(owner, code));

        stolen.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Equal(HttpStatusCode.OK, rightful.Status);
    }

    [Theory]
    [Stores("S256")]
    [Stores("plain")]
    public async Task A_PKCE_bound_code_needs_its_verifier(StoreKind store, string method)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string verifier = Pkce.NewVerifier();
        string challenge = method == "S256" ? Pkce.S256(verifier) : verifier;
        string code = await host.IssueCodeAsync(profile, user, challenge: challenge, method: method);

        var wrong = await host.PostTokenAsync(Exchange(profile, code, verifier: Pkce.NewVerifier()));
        var right = await host.PostTokenAsync(Exchange(profile, code, verifier: verifier));

        wrong.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Contains("code_verifier", wrong.Description, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, right.Status);
    }

    /// <summary>A profile with two codes for one user: one bound to an S256 challenge of <c>Verifier</c>, one without PKCE.</summary>
    private static async Task<(CreatedProfile Profile, string Verifier, string S256Code, string PlainCode)> IssueS256AndPlainCodesAsync(TollgateHost host)
    {
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string verifier = Pkce.NewVerifier();
        string s256Code = await host.IssueCodeAsync(profile, user, challenge: Pkce.S256(verifier), method: "S256");
        return (profile, verifier, s256Code, await host.IssueCodeAsync(profile, user));
    }

    [Theory, Stores]
    public async Task A_malformed_code_verifier_is_refused_with_the_rule_it_breaks_and_the_code_stays_usable(StoreKind store)
    {
        // RFC 7636 §4.1: 43 to 128 characters of the unreserved set. PostgreSQL does not even try to claim the code for
        // such a request (no terms can be met), so this is the path that only reads.
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, verifier, s256Code, plainCode) = await IssueS256AndPlainCodesAsync(host);
        string before = host.Snapshot();

        string[] malformed = [verifier[..42], verifier + new string('a', 86), verifier[..42] + "+", verifier[..42] + "=", verifier[..42] + "é"];
        var refused = new List<TokenReply>();
        foreach (string bad in malformed)
        {
            refused.Add(await host.PostTokenAsync(Exchange(profile, s256Code, verifier: bad)));
        }
        var unexpected = await host.PostTokenAsync(Exchange(profile, plainCode, verifier: verifier[..10]));
        string after = host.Snapshot();

        Assert.All(refused, reply =>
        {
            reply.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
            Assert.Contains("43 to 128 characters", reply.Description, StringComparison.Ordinal);
        });
        unexpected.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Contains("issued without a code_challenge", unexpected.Description, StringComparison.Ordinal);
        Assert.Equal(before, after);
        Assert.Equal(HttpStatusCode.OK, (await host.PostTokenAsync(Exchange(profile, s256Code, verifier: verifier))).Status);
        Assert.Equal(HttpStatusCode.OK, (await host.PostTokenAsync(Exchange(profile, plainCode))).Status);
    }

    [Theory, Stores]
    public async Task PKCE_cannot_be_downgraded_in_either_direction(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, verifier, s256Code, plainCode) = await IssueS256AndPlainCodesAsync(host);

        // S256 code redeemed without a verifier, or with the challenge itself as a "plain" verifier.
        var withoutVerifier = await host.PostTokenAsync(Exchange(profile, s256Code));
        var challengeAsVerifier = await host.PostTokenAsync(Exchange(profile, s256Code, verifier: Pkce.S256(verifier)));
        // A code issued without PKCE, redeemed with a verifier (RFC 9700 §2.1.1).
        var verifierWithoutChallenge = await host.PostTokenAsync(Exchange(profile, plainCode, verifier: verifier));

        withoutVerifier.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        challengeAsVerifier.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        verifierWithoutChallenge.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Equal(HttpStatusCode.OK, (await host.PostTokenAsync(Exchange(profile, s256Code, verifier: verifier))).Status);
    }

    [Theory, Stores]
    public async Task A_public_client_redeems_with_client_id_and_verifier_and_may_not_send_a_secret(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(isPublic: true);
        var user = await host.CreateUserAsync();
        string verifier = Pkce.NewVerifier();
        string code = await host.IssueCodeAsync(profile, user, challenge: Pkce.S256(verifier), method: "S256");

        var withSecret = await host.PostTokenAsync(("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl),
            ("code_verifier", verifier), ("client_id", profile.ClientId), ("client_secret", new string('a', 64)));
        var reply = await host.PostTokenAsync(("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl),
            ("code_verifier", verifier), ("client_id", profile.ClientId));

        withSecret.AssertError(HttpStatusCode.Unauthorized, "invalid_client");
        Assert.Equal(HttpStatusCode.OK, reply.Status);
    }

    [Theory, Stores]
    public async Task A_public_client_cannot_be_issued_a_code_without_PKCE(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(isPublic: true);
        var user = await host.CreateUserAsync();

        var result = await AuthorizationCodes.IssueAsync(host.Store,
            new(profile.ClientId, TollgateHost.ReturnUrl, user.Email, null, null, null), host.Clock, host.Options, CancellationToken.None);

        Assert.Contains("PKCE", result.Problem, StringComparison.Ordinal);
    }
}
