using System.Net;
using Microsoft.AspNetCore.WebUtilities;
using Tollgate.Server.Admin;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Web;

/// <summary>
/// The authorization endpoint's and the pages' defences, over real HTTP with a cookie jar: requests a
/// browser would never send (missing or forged anti-forgery tokens, planted cookies, hostile URLs).
/// </summary>
public sealed class WebSecurityTests
{
    internal static string AuthorizeUrl(
        CreatedProfile profile, string scope = "profile", string? state = "state-123", string redirectUri = TollgateHost.ReturnUrl,
        string? challenge = null, string? method = null) =>
        QueryHelpers.AddQueryString("/ap/oa", new Dictionary<string, string?>
        {
            ["client_id"] = profile.ClientId,
            ["scope"] = scope,
            ["response_type"] = "code",
            ["redirect_uri"] = redirectUri,
            ["state"] = state,
            ["code_challenge"] = challenge,
            ["code_challenge_method"] = method,
        }.Where(kv => kv.Value is not null));

    /// <summary>Signs in through the sign-in page it is sent to, and lands on the consent page.</summary>
    internal static async Task<WebReply> ConsentPageAsync(BrowserlessClient web, CreatedUser user, string authorizeUrl)
    {
        var first = await web.GetAsync(authorizeUrl);
        if (first.Status == HttpStatusCode.Redirect && first.Location!.StartsWith("/signin", StringComparison.Ordinal))
        {
            var signIn = await web.GetAsync(first.Location);
            var signedIn = await web.SubmitAsync(signIn, "/signin", ("email", user.Email), ("password", TollgateHost.Password));
            Assert.Equal(HttpStatusCode.SeeOther, signedIn.Status);
            first = await web.GetAsync(signedIn.Location!);
        }
        Assert.True(first.Status == HttpStatusCode.OK, $"expected the consent page, got {(int)first.Status} {first.Location}\n{first.Body}");
        return first;
    }

    internal static async Task<Dictionary<string, string>> AllowAsync(BrowserlessClient web, WebReply consent)
    {
        var decided = await web.SubmitAsync(consent, "/ap/oa", ("decision", "allow"));
        Assert.Equal(HttpStatusCode.SeeOther, decided.Status);
        Assert.StartsWith(TollgateHost.ReturnUrl + "?", decided.Location, StringComparison.Ordinal);
        return decided.LocationQuery();
    }

    [Theory, Stores]
    public async Task A_consent_post_without_or_with_a_forged_or_foreign_csrf_token_is_refused_and_issues_nothing(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);
        var consent = await ConsentPageAsync(web, user, AuthorizeUrl(profile));
        var fields = consent.Form("/ap/oa");
        fields["decision"] = "allow";
        using var other = new BrowserlessClient(host);
        var otherUser = await host.CreateUserAsync();
        string foreignToken = (await ConsentPageAsync(other, otherUser, AuthorizeUrl(profile))).CsrfToken;
        string before = host.Snapshot();

        var missing = await web.PostAsync("/ap/oa", [.. fields.Where(f => f.Key != "csrf_token").Select(f => (f.Key, f.Value))]);
        var forged = await web.PostAsync("/ap/oa", [.. fields.Select(f => (f.Key, f.Key == "csrf_token" ? "CfDJ8forged" + new string('A', 80) : f.Value))]);
        var foreign = await web.PostAsync("/ap/oa", [.. fields.Select(f => (f.Key, f.Key == "csrf_token" ? foreignToken : f.Value))]);

        foreach (var reply in new[] { missing, forged, foreign })
        {
            Assert.Equal(HttpStatusCode.BadRequest, reply.Status);
            Assert.Null(reply.Location);
            Assert.Contains("could not be verified", reply.Body, StringComparison.Ordinal);
        }
        Assert.Equal(before, host.Snapshot());
        var genuine = await web.PostAsync("/ap/oa", [.. fields.Select(f => (f.Key, f.Value))]);
        Assert.Equal(HttpStatusCode.SeeOther, genuine.Status);
    }

    [Theory, Stores]
    public async Task A_form_over_the_readers_limits_gets_a_400_on_every_page_and_changes_nothing(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);
        var consent = await ConsentPageAsync(web, user, AuthorizeUrl(profile));
        string before = host.Snapshot();
        // ASP.NET Core's form reader refuses a key over 2,048 characters; on the pages the anti-forgery check reads
        // the form first and wraps that refusal in its own exception, which once surfaced as a 500.
        (string, string?)[] hostile = [("csrf_token", consent.CsrfToken), ("decision", "allow"), (new string('A', 11_500), "")];

        foreach (string path in new[]
        {
            "/ap/oa", "/signin", "/signout", "/apps/remove", "/console/profiles", $"/console/profiles/{profile.ClientId}/return-urls",
            $"/console/profiles/{profile.ClientId}/return-urls/remove", $"/console/profiles/{profile.ClientId}/rotate-secret",
            $"/console/profiles/{profile.ClientId}/delete", "/device", "/device/decide",
        })
        {
            var reply = await web.PostAsync(path, hostile);
            Assert.True(reply.Status == HttpStatusCode.BadRequest, $"{path}: {(int)reply.Status}\n{reply.Body}");
        }
        Assert.Equal(before, host.Snapshot());
    }

    [Theory, Stores]
    public async Task Removing_an_app_needs_a_genuine_form(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);
        var answer = await AllowAsync(web, await ConsentPageAsync(web, user, AuthorizeUrl(profile)));
        var tokens = await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "authorization_code"), ("code", answer["code"]), ("redirect_uri", TollgateHost.ReturnUrl)));

        var forged = await web.PostAsync("/apps/remove", ("client_id", profile.ClientId));

        Assert.Equal(HttpStatusCode.BadRequest, forged.Status);
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, tokens.RefreshToken)).Status);
    }

    [Theory, Stores]
    public async Task Sign_in_always_starts_a_new_session_and_a_planted_session_id_is_worthless(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var user = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);
        const string planted = "attacker-chosen-session-id-0123456789abcdefghijklmnop";
        web.SetCookie("tollgate_session", planted);

        var first = await web.SignInAsync(user.Email);
        string firstId = web.Cookie("tollgate_session")!;
        var cookie = first.SetCookies.Single(c => c.StartsWith("tollgate_session=", StringComparison.Ordinal));
        // Signing in again from a signed-in browser (say, as someone else) replaces the session too.
        var apps = await web.GetAsync("/apps");
        var second = await web.PostAsync("/signin", ("csrf_token", apps.CsrfToken), ("email", user.Email), ("password", TollgateHost.Password));
        string secondId = web.Cookie("tollgate_session")!;

        Assert.Equal(HttpStatusCode.SeeOther, first.Status);
        Assert.Equal(HttpStatusCode.SeeOther, second.Status);
        Assert.NotEqual(planted, firstId);
        Assert.NotEqual(firstId, secondId);
        Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("samesite=lax", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(HttpStatusCode.OK, (await web.GetAsync("/apps")).Status);
        // The id this browser had before signing in again no longer means anything.
        using var attacker = new BrowserlessClient(host);
        attacker.SetCookie("tollgate_session", firstId);
        Assert.Equal(HttpStatusCode.Redirect, (await attacker.GetAsync("/apps")).Status);
        attacker.SetCookie("tollgate_session", planted);
        Assert.Equal(HttpStatusCode.Redirect, (await attacker.GetAsync("/apps")).Status);
    }

    [Theory, Stores]
    public async Task Signing_out_ends_the_session_in_the_store_not_just_in_the_browser(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var user = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);
        await web.SignInAsync(user.Email);
        string id = web.Cookie("tollgate_session")!;
        var apps = await web.GetAsync("/apps");

        var signedOut = await web.SubmitAsync(apps, "/signout");

        Assert.Equal(HttpStatusCode.SeeOther, signedOut.Status);
        using var replay = new BrowserlessClient(host);
        replay.SetCookie("tollgate_session", id);
        Assert.Equal(HttpStatusCode.Redirect, (await replay.GetAsync("/apps")).Status);
    }

    [Theory]
    [Stores("https://evil.example/")]
    [Stores("//evil.example/")]
    [Stores("/\\evil.example/")]
    [Stores("/\t/evil.example/")]
    [Stores("javascript:alert(1)")]
    public async Task Sign_in_never_redirects_off_site(StoreKind store, string returnTo)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var user = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);

        var signedIn = await web.SignInAsync(user.Email, returnTo: returnTo);

        Assert.Equal(HttpStatusCode.SeeOther, signedIn.Status);
        Assert.Equal("/apps", signedIn.Location);
    }

    [Theory]
    [Stores("https://evil.example/callback")]
    [Stores("https://app.example/callback/../evil")]
    [Stores("https://app.example/callback?next=https://evil.example")]
    [Stores("https://app.example/callbackx")]
    [Stores("https://APP.example/callback")]
    public async Task An_unregistered_return_url_gets_a_400_page_and_is_never_redirected_to(StoreKind store, string redirectUri)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);
        await web.SignInAsync(user.Email);

        var reply = await web.GetAsync(AuthorizeUrl(profile, redirectUri: redirectUri, scope: "no-such-scope"));

        Assert.Equal(HttpStatusCode.BadRequest, reply.Status);
        Assert.Null(reply.Location);
        Assert.Contains("not a registered return URL", reply.Body, StringComparison.Ordinal);
        Assert.Equal("text/html; charset=utf-8", reply.Header("Content-Type"));
    }

    [Theory, Stores]
    public async Task An_unknown_client_gets_a_400_page_even_with_a_plausible_return_url(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        using var web = new BrowserlessClient(host);

        var reply = await web.GetAsync(AuthorizeUrl(profile).Replace(profile.ClientId, "amzn1.application-oa2-client.unknown", StringComparison.Ordinal));

        Assert.Equal(HttpStatusCode.BadRequest, reply.Status);
        Assert.Null(reply.Location);
    }

    [Theory, Stores]
    public async Task State_round_trips_exactly_through_sign_in_consent_and_errors(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);
        const string state = "a b&c=d/é?#%25+\"<x>";

        var allowed = await AllowAsync(web, await ConsentPageAsync(web, user, AuthorizeUrl(profile, state: state)));
        var unknownScope = await web.GetAsync(AuthorizeUrl(profile, scope: "profile frobnicate", state: state));

        Assert.Equal(state, allowed["state"]);
        Assert.Equal("profile", allowed["scope"]);
        Assert.Equal(HttpStatusCode.Redirect, unknownScope.Status);
        var error = unknownScope.LocationQuery();
        Assert.Equal("invalid_scope", error["error"]);
        Assert.Equal(state, error["state"]);
        Assert.Contains("frobnicate", error["error_description"], StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task A_code_issued_with_S256_cannot_be_redeemed_without_a_verifier_or_as_plain(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);
        string verifier = Pkce.NewVerifier();
        string challenge = Pkce.S256(verifier);
        var answer = await AllowAsync(web, await ConsentPageAsync(web, user, AuthorizeUrl(profile, challenge: challenge, method: "S256")));
        (string, string?)[] Exchange(string? v) => TollgateHost.WithClient(profile,
            ("grant_type", "authorization_code"), ("code", answer["code"]), ("redirect_uri", TollgateHost.ReturnUrl), ("code_verifier", v));

        (await host.PostTokenAsync(Exchange(null))).AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        (await host.PostTokenAsync(Exchange(challenge))).AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Equal(HttpStatusCode.OK, (await host.PostTokenAsync(Exchange(verifier))).Status);
    }

    [Theory, Stores]
    public async Task A_public_client_must_use_PKCE_and_a_bad_method_is_refused_at_its_return_url(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(isPublic: true);
        using var web = new BrowserlessClient(host);

        var noPkce = await web.GetAsync(AuthorizeUrl(profile));
        var badMethod = await web.GetAsync(AuthorizeUrl(profile, challenge: Pkce.S256(Pkce.NewVerifier()), method: "S512"));

        Assert.Equal("invalid_request", noPkce.LocationQuery()["error"]);
        Assert.Contains("PKCE", noPkce.LocationQuery()["error_description"], StringComparison.Ordinal);
        Assert.Equal("invalid_request", badMethod.LocationQuery()["error"]);
    }

    [Theory, Stores]
    public async Task Sign_in_pauses_after_too_many_failures_for_an_account_with_a_clear_message_then_recovers(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var user = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);
        for (int i = 0; i < 4; i++)
        {
            var wrong = await web.SignInAsync(user.Email, "wrong password");
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.Status);
            Assert.Contains("do not match", wrong.Body, StringComparison.Ordinal);
        }

        var fifth = await web.SignInAsync(user.Email, "wrong password");
        var rightButPaused = await web.SignInAsync(user.Email);
        string? sessionWhilePaused = web.Cookie("tollgate_session");
        host.Clock.Advance(TimeSpan.FromMinutes(15) + TimeSpan.FromSeconds(1));
        var later = await web.SignInAsync(user.Email);

        Assert.Equal(HttpStatusCode.TooManyRequests, fifth.Status);
        Assert.Equal(HttpStatusCode.TooManyRequests, rightButPaused.Status);
        Assert.Contains("Too many failed sign-in attempts", rightButPaused.Body, StringComparison.Ordinal);
        Assert.Contains("15 minutes", rightButPaused.Body, StringComparison.Ordinal);
        Assert.NotNull(rightButPaused.Header("Retry-After"));
        Assert.Null(sessionWhilePaused);
        Assert.Equal(HttpStatusCode.SeeOther, later.Status);
    }

    [Theory, Stores]
    public async Task Sign_in_pauses_for_an_address_that_tries_many_accounts(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store, o => o.SignInMaxFailuresPerAddress = 6);
        var victim = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);
        for (int i = 0; i < 6; i++)
        {
            await web.SignInAsync($"guess-{i}@example.com", "password1");
        }

        var reply = await web.SignInAsync(victim.Email);

        Assert.Equal(HttpStatusCode.TooManyRequests, reply.Status);
    }

    [Theory, Stores]
    public async Task A_session_and_a_form_survive_a_server_restart(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);
        var consent = await ConsentPageAsync(web, user, AuthorizeUrl(profile));

        await host.RestartAsync();
        var answer = await AllowAsync(web, consent);

        Assert.Equal(HttpStatusCode.OK, (await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "authorization_code"), ("code", answer["code"]), ("redirect_uri", TollgateHost.ReturnUrl)))).Status);
    }

    [Theory, Stores]
    public async Task Consent_is_remembered_until_the_scope_grows(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        using var web = new BrowserlessClient(host);
        await AllowAsync(web, await ConsentPageAsync(web, user, AuthorizeUrl(profile, scope: "profile postal_code")));

        var again = await web.GetAsync(AuthorizeUrl(profile, scope: "profile"));
        var grown = await web.GetAsync(AuthorizeUrl(profile, scope: "profile profile:user_id"));

        Assert.Equal(HttpStatusCode.Redirect, again.Status);
        Assert.True(again.LocationQuery().ContainsKey("code"));
        Assert.Equal(HttpStatusCode.OK, grown.Status);
        Assert.Contains("now asks for more", grown.Body, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task Pages_are_not_cached_framed_or_scripted_and_names_are_encoded(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(name: "<script>alert(1)</script> & Co");
        var user = await host.CreateUserAsync(name: "Ana \"<b>\"");
        using var web = new BrowserlessClient(host);

        var consent = await ConsentPageAsync(web, user, AuthorizeUrl(profile));

        Assert.DoesNotContain("<script>", consent.Body, StringComparison.Ordinal);
        Assert.Contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co", consent.Body, StringComparison.Ordinal);
        Assert.DoesNotContain("<b>", consent.Body, StringComparison.Ordinal);
        Assert.Equal("no-store", consent.Header("Cache-Control"));
        Assert.Equal("DENY", consent.Header("X-Frame-Options"));
        Assert.Contains("frame-ancestors 'none'", consent.Header("Content-Security-Policy"), StringComparison.Ordinal);
        Assert.DoesNotContain("script-src", consent.Header("Content-Security-Policy"), StringComparison.Ordinal);
    }
}
