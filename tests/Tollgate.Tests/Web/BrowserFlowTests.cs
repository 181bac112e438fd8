using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Playwright;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Web;

/// <summary>
/// End to end in a real browser (headless Chromium): a person signs in, consents, is sent back to the
/// application, which then uses the token endpoint; the people's pages and the developer console are
/// clicked through as a person would (by label and role, so they are also checked for accessibility
/// names). Each page is photographed at phone and desktop widths.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class BrowserFlowTests(BrowserFixture browser)
{
    private const string AppPage = "<!doctype html><title>The application</title><p>Back at the application.</p>";

    /// <summary>A fresh browser profile; the application's return URL is answered locally, since nothing outside this machine is reachable.</summary>
    private async Task<(IBrowserContext Context, IPage Page)> OpenAsync(TollgateHost host)
    {
        var context = await browser.Browser.NewContextAsync(new()
        {
            BaseURL = host.BaseAddress.GetLeftPart(UriPartial.Authority),
            ViewportSize = new() { Width = 1280, Height = 800 },
        });
        await context.RouteAsync("https://app.example/**", route => route.FulfillAsync(new() { Status = 200, ContentType = "text/html", Body = AppPage }));
        return (context, await context.NewPageAsync());
    }

    private static async Task SignInAsync(IPage page, string email)
    {
        await page.GetByLabel("Email").FillAsync(email);
        await page.GetByLabel("Password").FillAsync(TollgateHost.Password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await page.WaitForURLAsync(url => !new Uri(url).AbsolutePath.StartsWith("/signin", StringComparison.Ordinal));
    }

    /// <summary>
    /// Presses a form's button and waits until the page it answers with shows <paramref name="expected"/> in
    /// <paramref name="selector"/>. Waiting for the page's load state instead raced the navigation the click
    /// starts, and once in CI waited out its 30 s; a web-first assertion retries until the answer is there.
    /// </summary>
    private static async Task SubmitAsync(IPage page, string button, string selector, string expected)
    {
        await page.GetByRole(AriaRole.Button, new() { Name = button }).ClickAsync();
        await Assertions.Expect(page.Locator(selector)).ToContainTextAsync(expected, new() { Timeout = 30_000 });
    }

    private static Dictionary<string, string> Query(IPage page) =>
        QueryHelpers.ParseQuery(new Uri(page.Url).Query).ToDictionary(kv => kv.Key, kv => kv.Value.ToString());

    private static (string, string?)[] Exchange(CreatedProfileRef profile, string code) => TollgateHost.WithClient(profile.Value,
        ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl));

    [Theory, Stores]
    public async Task Sign_in_consent_redirect_exchange_and_refresh_then_consent_is_remembered(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(name: "Video Central Reports");
        var user = await host.CreateUserAsync(name: "Ana Example");
        var (context, page) = await OpenAsync(host);
        await using var _ = context;

        await page.GotoAsync(WebSecurityTests.AuthorizeUrl(profile, scope: "profile postal_code", state: "xyz-1"));
        Assert.Contains("/signin", page.Url, StringComparison.Ordinal);
        await Screenshots.CaptureAsync(page, "signin");
        await SignInAsync(page, user.Email);
        Assert.Contains("/ap/oa", page.Url, StringComparison.Ordinal);
        Assert.Contains("Video Central Reports", await page.TextContentAsync("h1"), StringComparison.Ordinal);
        await Screenshots.CaptureAsync(page, "consent");
        await page.GetByRole(AriaRole.Button, new() { Name = "Allow" }).ClickAsync();
        await page.WaitForURLAsync("https://app.example/**");

        var answer = Query(page);
        Assert.Equal("xyz-1", answer["state"]);
        Assert.Equal("postal_code profile", answer["scope"]);
        var tokens = await host.PostTokenAsync(Exchange(new(profile), answer["code"]));
        Assert.Equal(HttpStatusCode.OK, tokens.Status);
        var refreshed = await host.RefreshAsync(profile, tokens.RefreshToken);
        Assert.Equal(HttpStatusCode.OK, refreshed.Status);
        Assert.Equal(HttpStatusCode.OK, (await host.TokenInfoAsync(refreshed.AccessToken)).Status);

        // The second time, no question: straight back with a new code. (Asked with the browser's own cookies;
        // Playwright does not intercept the target of a plain GET redirect, and nothing outside answers.)
        var again = await page.APIRequest.GetAsync(WebSecurityTests.AuthorizeUrl(profile, scope: "profile", state: "xyz-2"), new() { MaxRedirects = 0 });
        Assert.Equal(302, again.Status);
        var back = QueryHelpers.ParseQuery(new Uri(again.Headers["location"]).Query);
        Assert.Equal("xyz-2", back["state"].ToString());
        Assert.Equal(HttpStatusCode.OK, (await host.PostTokenAsync(Exchange(new(profile), back["code"].ToString()))).Status);
    }

    [Theory, Stores]
    public async Task Deny_sends_access_denied_with_the_state(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        var (context, page) = await OpenAsync(host);
        await using var _ = context;

        await page.GotoAsync(WebSecurityTests.AuthorizeUrl(profile, state: "deny-me"));
        await SignInAsync(page, user.Email);
        await page.GetByRole(AriaRole.Button, new() { Name = "Deny" }).ClickAsync();
        await page.WaitForURLAsync("https://app.example/**");

        Assert.Equal("access_denied", Query(page)["error"]);
        Assert.Equal("deny-me", Query(page)["state"]);
        Assert.False(Query(page).ContainsKey("code"));
    }

    [Theory, Stores]
    public async Task An_unregistered_return_url_shows_an_error_page_and_stays_here(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(name: "Video Central Reports");
        var (context, page) = await OpenAsync(host);
        await using var _ = context;
        bool leftTheSite = false;
        await context.RouteAsync("https://evil.example/**", route =>
        {
            leftTheSite = true;
            return route.AbortAsync();
        });

        var response = await page.GotoAsync(WebSecurityTests.AuthorizeUrl(profile, redirectUri: "https://evil.example/steal"));

        Assert.Equal(400, response!.Status);
        Assert.StartsWith(host.BaseAddress.GetLeftPart(UriPartial.Authority), page.Url, StringComparison.Ordinal);
        Assert.False(leftTheSite);
        Assert.Contains("not a registered return URL", await page.TextContentAsync("main"), StringComparison.Ordinal);
        await Screenshots.CaptureAsync(page, "error-unregistered-return-url");
    }

    [Theory, Stores]
    public async Task Removing_an_app_on_Your_apps_kills_its_refresh_and_access_tokens(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(name: "Video Central Reports");
        var other = await host.CreateProfileAsync(name: "Photo Printer");
        var user = await host.CreateUserAsync(name: "Ana Example");
        var (context, page) = await OpenAsync(host);
        await using var _ = context;
        await page.GotoAsync(WebSecurityTests.AuthorizeUrl(profile, scope: "profile postal_code"));
        await SignInAsync(page, user.Email);
        await page.GetByRole(AriaRole.Button, new() { Name = "Allow" }).ClickAsync();
        await page.WaitForURLAsync("https://app.example/**");
        var tokens = await host.PostTokenAsync(Exchange(new(profile), Query(page)["code"]));
        await page.GotoAsync(WebSecurityTests.AuthorizeUrl(other, scope: "profile:user_id"));
        await page.GetByRole(AriaRole.Button, new() { Name = "Allow" }).ClickAsync();
        await page.WaitForURLAsync("https://app.example/**");
        var otherTokens = await host.PostTokenAsync(Exchange(new(other), Query(page)["code"]));

        await page.GotoAsync("/apps");
        await Screenshots.CaptureAsync(page, "your-apps");
        await SubmitAsync(page, "Remove Video Central Reports", "main", "no longer has access");

        (await host.RefreshAsync(profile, tokens.RefreshToken)).AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        (await host.TokenInfoAsync(tokens.AccessToken)).AssertError(HttpStatusCode.BadRequest, "invalid_token");
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(other, otherTokens.RefreshToken)).Status);
        // Consent is forgotten too: the application has to ask again.
        await page.GotoAsync(WebSecurityTests.AuthorizeUrl(profile));
        Assert.Contains("/ap/oa", page.Url, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task A_developer_creates_a_profile_and_rotates_its_secret_with_an_overlap(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var developer = await host.CreateUserAsync(developer: true, name: "Dev Example");
        var (context, page) = await OpenAsync(host);
        await using var _ = context;

        await page.GotoAsync("/console");
        await SignInAsync(page, developer.Email);
        Assert.EndsWith("/console", page.Url, StringComparison.Ordinal);
        await page.GetByLabel("Application name").FillAsync("Reporting Robot");
        await page.GetByLabel("Allowed return URLs").FillAsync("https://robot.example/cb\nhttp://127.0.0.1:8080/cb");
        await page.GetByLabel("Extra scopes").FillAsync("videocentral::reporting");
        await Screenshots.CaptureAsync(page, "console");
        await SubmitAsync(page, "Create profile", "#client-id", "amzn1.application-oa2-client.");
        string clientId = (await page.TextContentAsync("#client-id"))!.Trim();
        string oldSecret = (await page.TextContentAsync("#client-secret"))!.Trim();
        Assert.StartsWith("amzn1.oa2-cs.v1.", oldSecret, StringComparison.Ordinal);

        async Task<HttpStatusCode> ClientCredentials(string secret)
        {
            var reply = await host.PostTokenAsync(
                ("grant_type", "client_credentials"), ("scope", "videocentral::reporting"), ("client_id", clientId), ("client_secret", secret));
            return reply.Status;
        }
        Assert.Equal(HttpStatusCode.OK, await ClientCredentials(oldSecret));
        Assert.Equal(HttpStatusCode.Unauthorized, await ClientCredentials("amzn1.oa2-cs.v1." + new string('0', 64)));

        await page.GetByLabel("Add a return URL").FillAsync("https://robot.example/cb2");
        await SubmitAsync(page, "Add URL", "main", "https://robot.example/cb2");
        await page.GetByLabel("Keep the current secret working for").FillAsync("7");
        await SubmitAsync(page, "Rotate secret", "main", "keeps working until");
        string newSecret = (await page.TextContentAsync("#client-secret"))!.Trim();
        Assert.NotEqual(oldSecret, newSecret);
        Assert.Contains("keeps working until 6 Dec 2026", await page.TextContentAsync("main"), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, await ClientCredentials(newSecret));
        // A GET, not a reload: reloading the rotation's answer would post the form again.
        await page.GotoAsync("/console/profiles/" + Uri.EscapeDataString(clientId));
        Assert.Contains("Issued: 2", await page.TextContentAsync(".legend"), StringComparison.Ordinal);
        Assert.Contains("Refused: 1", await page.TextContentAsync(".legend"), StringComparison.Ordinal);
        await Screenshots.CaptureAsync(page, "console-profile");

        // The old secret works throughout the overlap (the profile cache refreshes within a second), then stops.
        host.Clock.Advance(TimeSpan.FromDays(7) - TimeSpan.FromMinutes(1));
        Assert.Equal(HttpStatusCode.OK, await ClientCredentials(oldSecret));
        host.Clock.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(HttpStatusCode.Unauthorized, await ClientCredentials(oldSecret));
        Assert.Equal(HttpStatusCode.OK, await ClientCredentials(newSecret));
    }

    [Theory, Stores]
    public async Task A_device_gets_tokens_after_its_person_enters_the_code(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(name: "Living Room TV");
        var user = await host.CreateUserAsync(name: "Ana Example");
        using var codePairResponse = await host.Http.PostAsync("/auth/o2/create/codepair", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["response_type"] = "device_code", ["client_id"] = profile.ClientId, ["scope"] = "profile",
        }));
        Assert.Equal(HttpStatusCode.OK, codePairResponse.StatusCode);
        var pair = JsonDocument.Parse(await codePairResponse.Content.ReadAsStringAsync()).RootElement;
        string deviceCode = pair.GetProperty("device_code").GetString()!;
        string userCode = pair.GetProperty("user_code").GetString()!;
        Assert.Equal(host.BaseAddress.GetLeftPart(UriPartial.Authority) + "/device", pair.GetProperty("verification_uri").GetString());
        Task<TokenReply> Poll() => host.PostTokenAsync(("grant_type", "device_code"), ("device_code", deviceCode), ("user_code", userCode));

        (await Poll()).AssertError(HttpStatusCode.BadRequest, "authorization_pending");
        (await Poll()).AssertError(HttpStatusCode.BadRequest, "slow_down");

        var (context, page) = await OpenAsync(host);
        await using var _ = context;
        await page.GotoAsync("/device");
        await SignInAsync(page, user.Email);
        await Screenshots.CaptureAsync(page, "device-code");
        await page.GetByLabel("Code shown on your device").FillAsync(userCode[..4].ToLowerInvariant() + "-" + userCode[4..]);
        await SubmitAsync(page, "Continue", "h1", "Living Room TV");
        await Screenshots.CaptureAsync(page, "device-consent");
        await SubmitAsync(page, "Allow", "h1", "Device connected");
        await Screenshots.CaptureAsync(page, "device-connected");

        host.Clock.Advance(TimeSpan.FromSeconds(6));
        var tokens = await Poll();
        Assert.Equal(HttpStatusCode.OK, tokens.Status);
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, tokens.RefreshToken)).Status);
        host.Clock.Advance(TimeSpan.FromSeconds(6));
        (await Poll()).AssertError(HttpStatusCode.BadRequest, "invalid_grant");
    }
}

/// <summary>Lets the tests above build token requests for a profile without repeating the host's helper signature.</summary>
internal readonly record struct CreatedProfileRef(Tollgate.Server.Admin.CreatedProfile Value);
