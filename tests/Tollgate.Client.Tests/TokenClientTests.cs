using System.Diagnostics;
using System.Net;

namespace Tollgate.Client.Tests;

public sealed class TokenClientTests : IAsyncLifetime
{
    private FakeTokenServer _server = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _server = await FakeTokenServer.StartAsync();
        _http = TokenClient.CreateHttpClient(Fast.Retry);
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

    private TokenClient Client(string? secret = FakeTokenServer.ClientSecret) => new(_http, new TokenClientOptions
    {
        TokenEndpoint = _server.TokenEndpoint,
        ClientId = FakeTokenServer.ClientId,
        ClientSecret = secret,
    });

    [Fact]
    public async Task A_code_exchange_posts_a_form_with_the_client_credentials_and_returns_typed_tokens()
    {
        var verifier = Pkce.CreateCodeVerifier();
        var tokens = await Client().ExchangeCodeAsync("good-code", new Uri("http://127.0.0.1:1234/callback"), verifier);

        Assert.StartsWith("Atza|", tokens.AccessToken, StringComparison.Ordinal);
        Assert.StartsWith("Atzr|", tokens.RefreshToken, StringComparison.Ordinal);
        Assert.Equal("bearer", tokens.TokenType);
        Assert.Equal(TimeSpan.FromHours(1), tokens.ExpiresIn);
        var form = Assert.Single(_server.Forms);
        Assert.Equal("authorization_code", form["grant_type"]);
        Assert.Equal("good-code", form["code"]);
        Assert.Equal("http://127.0.0.1:1234/callback", form["redirect_uri"]);
        Assert.Equal(verifier, form["code_verifier"]);
        Assert.Equal(FakeTokenServer.ClientId, form["client_id"]);
        Assert.Equal(FakeTokenServer.ClientSecret, form["client_secret"]);
    }

    [Fact]
    public async Task A_refresh_token_with_a_pipe_survives_form_encoding()
    {
        var refresh = _server.IssueRefreshToken();
        var tokens = await Client().RefreshAsync(refresh);

        Assert.Equal(refresh, Assert.Single(_server.Forms)["refresh_token"]);
        Assert.NotEqual(refresh, tokens.RefreshToken);
    }

    [Fact]
    public async Task A_public_client_sends_no_client_secret()
    {
        await Client(secret: null).ClientCredentialsAsync("videocentral::reporting");

        var form = Assert.Single(_server.Forms);
        Assert.False(form.ContainsKey("client_secret"));
        Assert.Equal("videocentral::reporting", form["scope"]);
    }

    [Fact]
    public async Task Throttling_and_unavailability_are_retried_honouring_Retry_After()
    {
        _server.FailNext(1, HttpStatusCode.TooManyRequests, retryAfterSeconds: 1);
        _server.FailNext(1, HttpStatusCode.ServiceUnavailable, retryAfterSeconds: 1);
        var clock = Stopwatch.StartNew();

        var tokens = await Client().ClientCredentialsAsync("videocentral::reporting");

        Assert.NotNull(tokens.AccessToken);
        Assert.Equal(3, _server.TokenRequests);
        // Without Retry-After the backoff would have been about 20 ms + 40 ms.
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1.9), $"took {clock.Elapsed}");
    }

    [Fact]
    public async Task Server_errors_without_Retry_After_are_retried_with_backoff()
    {
        _server.FailNext(3, HttpStatusCode.ServiceUnavailable, retryAfterSeconds: null);

        var tokens = await Client().RefreshAsync(_server.IssueRefreshToken());

        Assert.NotNull(tokens.RefreshToken);
        Assert.Equal(4, _server.TokenRequests);
    }

    [Fact]
    public async Task A_server_that_stays_unavailable_surfaces_a_typed_error_after_the_retries()
    {
        _server.FailNext(100, HttpStatusCode.ServiceUnavailable, retryAfterSeconds: null);

        var error = await Assert.ThrowsAsync<TokenErrorException>(() => Client().ClientCredentialsAsync("s"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, error.StatusCode);
        Assert.Equal("temporarily_unavailable", error.Error);
        Assert.NotNull(error.RequestId);
        Assert.Equal(1 + Fast.Retry.MaxRetryAttempts, _server.TokenRequests);
    }

    [Fact]
    public async Task Invalid_grant_is_not_retried_and_asks_for_reauthorization()
    {
        var error = await Assert.ThrowsAsync<ReauthorizationRequiredException>(() => Client().RefreshAsync("Atzr|unknown"));

        Assert.Equal(1, _server.TokenRequests);
        Assert.Equal("invalid_grant", error.Error);
        Assert.Equal(HttpStatusCode.BadRequest, error.StatusCode);
        Assert.Contains("refresh_token", error.ErrorDescription, StringComparison.Ordinal);
        // The fake server puts the request id only in the x-amzn-RequestId header for invalid_grant.
        Assert.True(Guid.TryParse(error.RequestId, out _));
    }

    [Fact]
    public async Task Invalid_client_is_a_typed_error_that_is_not_retried()
    {
        var error = await Assert.ThrowsAsync<TokenErrorException>(() => Client(secret: "wrong").ClientCredentialsAsync("s"));

        Assert.IsNotType<ReauthorizationRequiredException>(error);
        Assert.Equal("invalid_client", error.Error);
        Assert.Equal("Client authentication failed", error.ErrorDescription);
        Assert.Equal(HttpStatusCode.Unauthorized, error.StatusCode);
        Assert.Equal(1, _server.TokenRequests);
    }

    [Fact]
    public void Region_presets_are_Amazons_three_token_hosts()
    {
        Assert.Equal("https://api.amazon.com/auth/o2/token", TokenEndpoints.ForRegion("na").AbsoluteUri);
        Assert.Equal("https://api.amazon.co.uk/auth/o2/token", TokenEndpoints.ForRegion("EU").AbsoluteUri);
        Assert.Equal("https://api.amazon.co.jp/auth/o2/token", TokenEndpoints.ForRegion("fe").AbsoluteUri);
        Assert.Throws<ArgumentException>(() => TokenEndpoints.ForRegion("us"));
    }

    [Fact]
    public void The_S256_challenge_matches_the_RFC_7636_example()
    {
        Assert.Equal("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Pkce.CreateS256Challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        Assert.Equal(43, Pkce.CreateCodeVerifier().Length);
    }
}
