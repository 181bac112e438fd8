using System.Net;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests;

public sealed class TokenInfoAndProfileTests
{
    [Theory, Stores]
    public async Task Tokeninfo_answers_like_Login_with_Amazon_with_exp_as_seconds_remaining(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync();
        long issuedAt = host.Clock.GetUtcNow().ToUnixTimeSeconds();

        host.Clock.Advance(TimeSpan.FromSeconds(100));
        var info = await host.TokenInfoAsync(tokens.AccessToken);

        Assert.Equal(HttpStatusCode.OK, info.Status);
        Assert.Equal(profile.ClientId, info["aud"]);
        Assert.Equal(profile.AppId, info["app_id"]);
        Assert.StartsWith("amzn1.account.", info["user_id"], StringComparison.Ordinal);
        Assert.Equal("3500", info["exp"]);
        Assert.Equal(issuedAt.ToString(System.Globalization.CultureInfo.InvariantCulture), info["iat"]);
        Assert.Equal(host.BaseAddress.GetLeftPart(UriPartial.Authority), info["iss"]);
    }

    [Theory, Stores]
    public async Task Revoking_a_grant_ends_its_cached_access_and_refresh_tokens_at_once(StoreKind store)
    {
        // tokeninfo caches "grant active" and reuse-policy refreshes cache the token record; a code replay revokes
        // the grant, and both must stop working on the very next request, not after the cache refresh interval.
        await using var host = await TollgateHost.StartAsync(store, o => o.ProfileCacheRefreshMilliseconds = 60_000);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string code = await host.IssueCodeAsync(profile, user);
        var first = await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl)));
        Assert.Equal(HttpStatusCode.OK, (await host.TokenInfoAsync(first.AccessToken)).Status);
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, first.RefreshToken)).Status);
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, first.RefreshToken)).Status);

        var replay = await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl)));

        replay.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        (await host.TokenInfoAsync(first.AccessToken)).AssertError(HttpStatusCode.BadRequest, "invalid_token");
        (await host.RefreshAsync(profile, first.RefreshToken)).AssertError(HttpStatusCode.BadRequest, "invalid_grant");
    }

    [Theory, Stores]
    public async Task An_expired_access_token_is_rejected_to_the_second(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (_, tokens) = await host.AuthorizeAsync();

        host.Clock.Advance(TimeSpan.FromSeconds(3599));
        var stillValid = await host.TokenInfoAsync(tokens.AccessToken);
        host.Clock.Advance(TimeSpan.FromSeconds(1));
        var expired = await host.TokenInfoAsync(tokens.AccessToken);

        Assert.Equal("1", stillValid["exp"]);
        expired.AssertError(HttpStatusCode.BadRequest, "invalid_token");
        Assert.Contains("expired", expired.Description, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task A_tampered_or_foreign_access_token_is_rejected(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (_, tokens) = await host.AuthorizeAsync();
        char[] chars = tokens.AccessToken.ToCharArray();
        chars[20] = chars[20] == 'A' ? 'B' : 'A';

        var tampered = await host.TokenInfoAsync(new string(chars));
        var foreign = await host.TokenInfoAsync("Atza|IwEBIPSxTCdGGC-xL-ywFib_lJfg-D7d435Jw739GWa3xy6dHJxXqy2EwddQkIchiDNiqa4kFJ4iTv_");
        var missing = await host.GetAsync("/auth/o2/tokeninfo");
        var twice = await host.GetAsync($"/auth/o2/tokeninfo?access_token=a&access_token=b");

        tampered.AssertError(HttpStatusCode.BadRequest, "invalid_token");
        foreign.AssertError(HttpStatusCode.BadRequest, "invalid_token");
        missing.AssertError(HttpStatusCode.BadRequest, "invalid_request");
        twice.AssertError(HttpStatusCode.BadRequest, "invalid_request");
    }

    [Theory, Stores]
    public async Task Client_credentials_tokens_have_no_user_but_a_scope_and_no_refresh_token(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(scopes: ["videocentral::reporting"]);

        var reply = await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "client_credentials"), ("scope", "videocentral::reporting")));
        var info = await host.TokenInfoAsync(reply.AccessToken);

        Assert.Equal(HttpStatusCode.OK, reply.Status);
        Assert.Null(reply["refresh_token"]);
        Assert.Equal("videocentral::reporting", reply["scope"]);
        Assert.Null(info["user_id"]);
        Assert.Equal(profile.ClientId, info["aud"]);
    }

    [Theory, Stores]
    public async Task Client_credentials_refuses_missing_and_user_scopes(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(scopes: ["videocentral::reporting"]);

        var missing = await host.PostTokenAsync(TollgateHost.WithClient(profile, ("grant_type", "client_credentials")));
        var userScope = await host.PostTokenAsync(TollgateHost.WithClient(profile, ("grant_type", "client_credentials"), ("scope", "profile")));

        missing.AssertError(HttpStatusCode.BadRequest, "invalid_scope");
        userScope.AssertError(HttpStatusCode.BadRequest, "invalid_scope");
    }

    [Theory]
    [Stores("bearer")]
    [Stores("query")]
    [Stores("amz-header")]
    public async Task The_profile_endpoint_takes_the_token_three_ways(StoreKind store, string how)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (_, tokens) = await host.AuthorizeAsync();
        string token = tokens.AccessToken;

        var reply = how switch
        {
            "bearer" => await host.GetAsync("/user/profile", h => h.TryAddWithoutValidation("Authorization", "Bearer " + token)),
            "query" => await host.GetAsync("/user/profile?access_token=" + Uri.EscapeDataString(token)),
            _ => await host.GetAsync("/user/profile", h => h.TryAddWithoutValidation("x-amz-access-token", token)),
        };

        Assert.Equal(HttpStatusCode.OK, reply.Status);
        Assert.StartsWith("amzn1.account.", reply["user_id"], StringComparison.Ordinal);
        Assert.Equal("Test User", reply["name"]);
        Assert.EndsWith("@example.com", reply["email"], StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task The_user_id_scope_shows_only_the_user_id(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (_, tokens) = await host.AuthorizeAsync(scope: "profile:user_id");

        var reply = await host.GetAsync("/user/profile", h => h.TryAddWithoutValidation("Authorization", "Bearer " + tokens.AccessToken));

        Assert.Equal(HttpStatusCode.OK, reply.Status);
        Assert.NotNull(reply["user_id"]);
        Assert.Null(reply["email"]);
        Assert.Null(reply["name"]);
    }

    [Theory, Stores]
    public async Task The_profile_endpoint_refuses_missing_doubled_revoked_and_userless_tokens(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        var service = await host.CreateProfileAsync(scopes: ["videocentral::reporting"]);
        var serviceToken = (await host.PostTokenAsync(TollgateHost.WithClient(service,
            ("grant_type", "client_credentials"), ("scope", "videocentral::reporting")))).AccessToken;

        var none = await host.GetAsync("/user/profile");
        var doubled = await host.GetAsync("/user/profile?access_token=" + Uri.EscapeDataString(tokens.AccessToken),
            h => h.TryAddWithoutValidation("x-amz-access-token", tokens.AccessToken));
        var userless = await host.GetAsync("/user/profile", h => h.TryAddWithoutValidation("Authorization", "Bearer " + serviceToken));
        await host.RefreshAsync(profile, tokens.RefreshToken);
        host.Clock.Advance(TimeSpan.FromMinutes(1));
        await host.RefreshAsync(profile, tokens.RefreshToken); // replay after the grace window revokes the family
        var revoked = await host.GetAsync("/user/profile", h => h.TryAddWithoutValidation("Authorization", "Bearer " + tokens.AccessToken));

        none.AssertError(HttpStatusCode.Unauthorized, "invalid_request");
        Assert.Equal("Bearer", none.Headers.WwwAuthenticate.Single().Scheme);
        doubled.AssertError(HttpStatusCode.BadRequest, "invalid_request");
        userless.AssertError(HttpStatusCode.Forbidden, "insufficient_scope");
        revoked.AssertError(HttpStatusCode.Unauthorized, "invalid_token");
    }
}
