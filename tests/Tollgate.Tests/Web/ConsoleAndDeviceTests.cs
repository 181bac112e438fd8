using System.Net;
using System.Text.Json;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Web;

/// <summary>The developer console's access rules and the device flow's refusals, over HTTP.</summary>
public sealed class ConsoleAndDeviceTests
{
    [Theory, Stores]
    public async Task The_console_is_for_developers_and_shows_only_their_own_profiles(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var person = await host.CreateUserAsync();
        var developer = await host.CreateUserAsync(developer: true);
        var otherDeveloper = await host.CreateUserAsync(developer: true);
        var theirs = await host.CreateProfileAsync(name: "Someone else's", ownerEmail: otherDeveloper.Email);
        var mine = await host.CreateProfileAsync(name: "Mine", ownerEmail: developer.Email);
        using var anonymous = new BrowserlessClient(host);
        using var personWeb = new BrowserlessClient(host);
        using var developerWeb = new BrowserlessClient(host);
        await personWeb.SignInAsync(person.Email);
        await developerWeb.SignInAsync(developer.Email);

        Assert.Equal("/signin?return=%2Fconsole", (await anonymous.GetAsync("/console")).Location);
        var forbidden = await personWeb.GetAsync("/console");
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.Status);
        Assert.Contains("grant-developer", forbidden.Body, StringComparison.Ordinal);
        var list = await developerWeb.GetAsync("/console");
        Assert.Contains("Mine", list.Body, StringComparison.Ordinal);
        Assert.DoesNotContain("Someone else", list.Body, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await developerWeb.GetAsync("/console/profiles/" + theirs.ClientId)).Status);
        var page = await developerWeb.GetAsync("/console/profiles/" + mine.ClientId);
        Assert.Equal(HttpStatusCode.OK, page.Status);
        var deleteTheirs = await developerWeb.PostAsync($"/console/profiles/{theirs.ClientId}/delete", ("csrf_token", page.CsrfToken), ("confirm", "on"));
        Assert.Equal(HttpStatusCode.NotFound, deleteTheirs.Status);
        Assert.NotNull(await host.Store.FindProfileAsync(theirs.ClientId, CancellationToken.None));
    }

    [Theory, Stores]
    public async Task Deleting_a_profile_in_the_console_invalidates_all_its_grants(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var developer = await host.CreateUserAsync(developer: true);
        var profile = await host.CreateProfileAsync(ownerEmail: developer.Email);
        var user = await host.CreateUserAsync();
        using var person = new BrowserlessClient(host);
        var answer = await WebSecurityTests.AllowAsync(person, await WebSecurityTests.ConsentPageAsync(person, user, WebSecurityTests.AuthorizeUrl(profile)));
        var tokens = await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "authorization_code"), ("code", answer["code"]), ("redirect_uri", TollgateHost.ReturnUrl)));
        using var web = new BrowserlessClient(host);
        await web.SignInAsync(developer.Email);
        var page = await web.GetAsync("/console/profiles/" + profile.ClientId);

        var unconfirmed = await web.SubmitAsync(page, $"/console/profiles/{profile.ClientId}/delete");
        var deleted = await web.SubmitAsync(page, $"/console/profiles/{profile.ClientId}/delete", ("confirm", "on"));

        Assert.Equal(HttpStatusCode.BadRequest, unconfirmed.Status);
        Assert.Equal(HttpStatusCode.SeeOther, deleted.Status);
        (await host.TokenInfoAsync(tokens.AccessToken)).AssertError(HttpStatusCode.BadRequest, "invalid_token");
        (await host.RefreshAsync(profile, tokens.RefreshToken)).AssertError(HttpStatusCode.Unauthorized, "invalid_client");
    }

    private static async Task<(string DeviceCode, string UserCode)> CodePairAsync(TollgateHost host, string clientId)
    {
        using var response = await host.Http.PostAsync("/auth/o2/create/codepair", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["response_type"] = "device_code", ["client_id"] = clientId, ["scope"] = "profile",
        }));
        var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(600, json.GetProperty("expires_in").GetInt32());
        Assert.Equal(5, json.GetProperty("interval").GetInt32());
        return (json.GetProperty("device_code").GetString()!, json.GetProperty("user_code").GetString()!);
    }

    [Theory, Stores]
    public async Task Codepair_refuses_unknown_clients_and_scopes_with_protocol_errors(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        async Task<TokenReply> Ask(params (string, string)[] fields)
        {
            using var response = await host.Http.PostAsync("/auth/o2/create/codepair",
                new FormUrlEncodedContent(fields.Select(f => new KeyValuePair<string, string>(f.Item1, f.Item2))));
            return await TokenReply.ReadAsync(response);
        }

        (await Ask(("response_type", "device_code"), ("client_id", "nobody"), ("scope", "profile"))).AssertError(HttpStatusCode.Unauthorized, "invalid_client");
        (await Ask(("response_type", "device_code"), ("client_id", profile.ClientId), ("scope", "admin"))).AssertError(HttpStatusCode.BadRequest, "invalid_scope");
        (await Ask(("response_type", "code"), ("client_id", profile.ClientId), ("scope", "profile"))).AssertError(HttpStatusCode.BadRequest, "invalid_request");
        // A multipart body without its boundary: LimitTests.A_multipart_body_without_its_boundary_is_400_on_every_post_route.
    }

    [Theory, Stores]
    public async Task A_denied_pair_answers_access_denied_and_an_old_one_expired_token(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var other = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        var denied = await CodePairAsync(host, profile.ClientId);
        var expiring = await CodePairAsync(host, profile.ClientId);
        using var web = new BrowserlessClient(host);
        await web.SignInAsync(user.Email);
        var form = await web.GetAsync("/device");
        var consent = await web.SubmitAsync(form, "/device", ("user_code", denied.UserCode));
        var wrong = await web.SubmitAsync(form, "/device", ("user_code", "BBBB-BBBB"));

        var decided = await web.SubmitAsync(consent, "/device/decide", ("decision", "deny"));
        Task<TokenReply> Poll((string DeviceCode, string UserCode) pair, params (string, string?)[] client) =>
            host.PostTokenAsync([("grant_type", "device_code"), ("device_code", pair.DeviceCode), ("user_code", pair.UserCode), .. client]);

        Assert.Equal(HttpStatusCode.BadRequest, wrong.Status);
        Assert.Contains("not valid", wrong.Body, StringComparison.Ordinal);
        Assert.Contains("not given access", decided.Body, StringComparison.Ordinal);
        (await Poll(denied)).AssertError(HttpStatusCode.BadRequest, "access_denied");
        // Another client cannot redeem (or even probe) this profile's pair.
        (await Poll(expiring, TollgateHost.WithClient(other))).AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        host.Clock.Advance(TimeSpan.FromSeconds(601));
        (await Poll(expiring)).AssertError(HttpStatusCode.BadRequest, "expired_token");
    }
}
