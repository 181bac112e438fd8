using System.Diagnostics;
using System.Web;

namespace Tollgate.Client.Tests;

/// <summary>The <c>tollgate login/token/logout</c> processes against the fake token endpoint.</summary>
public sealed class CliTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private FakeTokenServer _server = null!;

    public async Task InitializeAsync() => _server = await FakeTokenServer.StartAsync();

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _dir.Dispose();
    }

    private async Task<(Process Login, Uri AuthorizeUrl)> StartBrowserLoginAsync(string store)
    {
        var login = TollgateBinary.Start(
            ["login", "--client-id", FakeTokenServer.ClientId, "--client-secret-stdin", "--scope", "profile",
             "--token-url", _server.TokenEndpoint.AbsoluteUri, "--store", store],
            redirectInput: true);
        await login.StandardInput.WriteLineAsync(FakeTokenServer.ClientSecret);
        login.StandardInput.Close();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var url = await login.StandardOutput.ReadLineAsync(timeout.Token);
        return (login, new Uri(url!));
    }

    [Fact]
    public async Task Browser_login_uses_PKCE_S256_and_a_loopback_redirect_and_checks_state()
    {
        var store = _dir.File("credentials");
        var (login, authorize) = await StartBrowserLoginAsync(store);
        using var _ = login;
        var query = HttpUtility.ParseQueryString(authorize.Query);
        Assert.Equal(new Uri(_server.TokenEndpoint, "/ap/oa").AbsolutePath, authorize.AbsolutePath);
        Assert.Equal("code", query["response_type"]);
        Assert.Equal("S256", query["code_challenge_method"]);
        Assert.Equal("profile", query["scope"]);
        var redirect = new Uri(query["redirect_uri"]!);
        Assert.Equal("127.0.0.1", redirect.Host);
        Assert.Equal("/callback", redirect.AbsolutePath);

        // The browser's redirect back, as the authorization endpoint would send it.
        using var browser = new HttpClient();
        using var answer = await browser.GetAsync(new Uri(redirect, $"?code=good-code&state={Uri.EscapeDataString(query["state"]!)}"));
        await login.WaitForExitAsync();

        Assert.True(answer.IsSuccessStatusCode);
        Assert.Equal(0, login.ExitCode);
        var form = _server.Forms.Single(f => f["grant_type"] == "authorization_code");
        Assert.Equal(query["code_challenge"], Pkce.CreateS256Challenge(form["code_verifier"]));
        Assert.Equal(redirect.AbsoluteUri, form["redirect_uri"]);
        var token = await TollgateBinary.RunAsync(["token", "--store", store]);
        Assert.Equal(0, token.ExitCode);
        Assert.Equal(0, _server.RefreshRequests); // the access token from the login is still fresh
    }

    [Fact]
    public async Task A_redirect_with_the_wrong_state_stores_nothing()
    {
        var store = _dir.File("credentials");
        var (login, authorize) = await StartBrowserLoginAsync(store);
        using var _ = login;
        var redirect = new Uri(HttpUtility.ParseQueryString(authorize.Query)["redirect_uri"]!);
        var stderr = login.StandardError.ReadToEndAsync();

        using var browser = new HttpClient();
        using var answer = await browser.GetAsync(new Uri(redirect, "?code=good-code&state=forged"));
        await login.WaitForExitAsync();

        Assert.Equal(1, login.ExitCode);
        Assert.Contains("state", (await stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries).Last(), StringComparison.Ordinal);
        Assert.False(File.Exists(store));
        Assert.Equal(0, _server.TokenRequests);
    }

    [Theory]
    [InlineData("login", "--client-id", "x", "--region", "xx")]
    [InlineData("login", "--client-id", "x", "--region", "eu", "--token-url", "http://127.0.0.1:1/auth/o2/token", "--scope", "profile")]
    [InlineData("login", "--client-id", "x", "--code", "c")]
    [InlineData("login", "--client-id", "x")]
    [InlineData("login", "--scope", "profile")]
    [InlineData("token", "--no-such-option")]
    public async Task Bad_usage_exits_2_with_a_one_line_reason(params string[] args)
    {
        var run = await TollgateBinary.RunAsync(args);

        Assert.Equal(2, run.ExitCode);
        Assert.Equal("", run.Stdout);
        Assert.StartsWith("tollgate: ", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_invalid_code_fails_with_exit_1_and_a_one_line_reason()
    {
        var run = await TollgateBinary.RunAsync(
            ["login", "--client-id", FakeTokenServer.ClientId, "--code", "bad-code", "--redirect-uri", "http://127.0.0.1:9/cb",
             "--token-url", _server.TokenEndpoint.AbsoluteUri, "--store", _dir.File("credentials")]);

        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.Stderr.TrimEnd().Split('\n'));
        Assert.Contains("invalid_grant", run.Stderr, StringComparison.Ordinal);
        Assert.Equal(1, _server.TokenRequests);
    }

    [Fact]
    public async Task Token_on_a_corrupt_store_fails_and_leaves_the_file_alone()
    {
        var path = _dir.File("credentials");
        await File.WriteAllTextAsync(path, "not ours");

        var run = await TollgateBinary.RunAsync(["token", "--store", path]);
        var logout = await TollgateBinary.RunAsync(["logout", "--store", path]);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal(1, logout.ExitCode);
        Assert.Contains("not a Tollgate credentials file", run.Stderr, StringComparison.Ordinal);
        Assert.Equal("not ours", await File.ReadAllTextAsync(path));
    }
}
