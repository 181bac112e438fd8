using System.Net;
using Microsoft.Extensions.DependencyInjection;

namespace Tollgate.Client.Tests;

public sealed class BearerTokenHandlerTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private FakeTokenServer _server = null!;
    private HttpClient _tokenHttp = null!;
    private FileTokenStore _store = null!;

    public async Task InitializeAsync()
    {
        _server = await FakeTokenServer.StartAsync();
        _tokenHttp = TokenClient.CreateHttpClient(Fast.Retry);
        _store = new FileTokenStore(_dir.File("credentials"));
        await _store.WriteAsync(Fast.Credentials(_server, _server.IssueRefreshToken()));
    }

    public async Task DisposeAsync()
    {
        _tokenHttp.Dispose();
        await _server.DisposeAsync();
        _dir.Dispose();
    }

    private HttpClient ApiClient() =>
        new(new BearerTokenHandler(new AccessTokenProvider(_store, _tokenHttp)) { InnerHandler = new SocketsHttpHandler() });

    [Fact]
    public async Task Requests_carry_the_access_token()
    {
        using var api = ApiClient();

        using var response = await api.GetAsync(_server.ApiEndpoint);
        using var again = await api.GetAsync(_server.ApiEndpoint);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.Equal(1, _server.RefreshRequests);
    }

    [Fact]
    public async Task A_401_causes_one_refresh_and_one_retry()
    {
        using var api = ApiClient();
        (await api.GetAsync(_server.ApiEndpoint)).Dispose();
        _server.RevokeAllAccessTokens();

        using var response = await api.GetAsync(_server.ApiEndpoint);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, _server.RefreshRequests);
        Assert.Equal(3, _server.ApiRequests);
    }

    [Fact]
    public async Task A_server_that_keeps_answering_401_is_asked_twice_and_never_more()
    {
        _server.ApiAlwaysUnauthorized = true;
        using var api = ApiClient();

        using var response = await api.GetAsync(_server.ApiEndpoint);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal(2, _server.ApiRequests);
        Assert.Equal(2, _server.RefreshRequests); // the first token, then exactly one refresh after the 401
    }

    [Fact]
    public async Task Concurrent_401s_for_the_same_token_share_one_refresh()
    {
        using var api = ApiClient();
        (await api.GetAsync(_server.ApiEndpoint)).Dispose();
        _server.RevokeAllAccessTokens();
        _server.RefreshDelay = TimeSpan.FromMilliseconds(200);

        var responses = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => api.GetAsync(_server.ApiEndpoint)));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Equal(2, _server.RefreshRequests);
        foreach (var r in responses)
            r.Dispose();
    }

    [Fact]
    public async Task A_request_body_is_sent_again_on_the_retry()
    {
        _server.ApiAlwaysUnauthorized = true;
        using var api = ApiClient();
        using var content = new StringContent("payload");

        using var response = await api.PutAsync(_server.ApiEndpoint, content);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal(["payload", "payload"], _server.ApiBodies);
    }

    [Fact]
    public async Task The_service_collection_registration_wires_store_provider_and_handler()
    {
        var services = new ServiceCollection();
        services.AddTollgateClient(o =>
        {
            o.StorePath = _store.Path;
            o.Retry.BaseDelay = TimeSpan.FromMilliseconds(10);
        });
        services.AddHttpClient("api", c => c.BaseAddress = _server.ApiEndpoint).AddTollgateBearerToken();
        await using var provider = services.BuildServiceProvider();
        _server.FailNext(1, HttpStatusCode.ServiceUnavailable, retryAfterSeconds: null);

        var api = provider.GetRequiredService<IHttpClientFactory>().CreateClient("api");
        using var response = await api.GetAsync(new Uri("", UriKind.Relative));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(1, _server.RefreshRequests);
        Assert.Equal(2, _server.TokenRequests); // the 503 was retried by the registered resilience handler
        Assert.Same(provider.GetRequiredService<AccessTokenProvider>(), provider.GetRequiredService<AccessTokenProvider>());
    }
}
