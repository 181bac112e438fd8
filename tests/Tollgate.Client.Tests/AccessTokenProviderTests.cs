using Microsoft.Extensions.Time.Testing;

namespace Tollgate.Client.Tests;

public sealed class AccessTokenProviderTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
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
        _dir.Dispose();
    }

    private async Task<FileTokenStore> LoggedInStoreAsync(string name = "credentials")
    {
        var store = new FileTokenStore(_dir.File(name));
        await store.WriteAsync(Fast.Credentials(_server, _server.IssueRefreshToken()));
        return store;
    }

    [Fact]
    public async Task Two_hundred_concurrent_callers_cause_exactly_one_refresh()
    {
        var store = await LoggedInStoreAsync();
        _server.RefreshDelay = TimeSpan.FromMilliseconds(300);
        var provider = new AccessTokenProvider(store, _http);
        using var start = new ManualResetEventSlim();

        var callers = Enumerable.Range(0, 200)
            .Select(_ => Task.Run(async () =>
            {
                start.Wait();
                return await provider.GetAccessTokenAsync();
            }))
            .ToArray();
        start.Set();
        var tokens = await Task.WhenAll(callers);

        Assert.Equal(1, _server.RefreshRequests);
        Assert.Single(tokens.Distinct());
        Assert.Empty(_server.InvalidGrants);
    }

    [Fact]
    public async Task Twenty_providers_sharing_one_store_file_cause_exactly_one_refresh()
    {
        // Each provider has its own FileTokenStore, so its own lock file handle: flock makes them exclude each other
        // exactly as separate processes would (the real multi-process test runs the CLI).
        var path = (await LoggedInStoreAsync()).Path;
        _server.RefreshDelay = TimeSpan.FromMilliseconds(300);
        var providers = Enumerable.Range(0, 20).Select(_ => new AccessTokenProvider(new FileTokenStore(path), _http)).ToArray();
        using var start = new ManualResetEventSlim();

        var callers = providers
            .Select(p => Task.Run(async () =>
            {
                start.Wait();
                return await p.GetAccessTokenAsync();
            }))
            .ToArray();
        start.Set();
        var tokens = await Task.WhenAll(callers);

        Assert.Equal(1, _server.RefreshRequests);
        Assert.Single(tokens.Distinct());
    }

    [Fact]
    public async Task A_rotated_refresh_token_is_always_the_one_used_next()
    {
        var store = await LoggedInStoreAsync();
        var provider = new AccessTokenProvider(store, _http);
        var token = await provider.GetAccessTokenAsync();

        for (var i = 0; i < 10; i++)
            token = await new AccessTokenProvider(new FileTokenStore(store.Path), _http).RefreshAsync(token);

        Assert.Equal(11, _server.RefreshRequests);
        Assert.Empty(_server.InvalidGrants);
        var stored = (await store.ReadAsync())!;
        Assert.True(_server.IsValidRefreshToken(stored.RefreshToken));
        Assert.Equal(token, stored.AccessToken);
    }

    [Fact]
    public async Task A_server_that_does_not_rotate_keeps_the_refresh_token_working()
    {
        _server.Rotate = false;
        var store = await LoggedInStoreAsync();
        var original = (await store.ReadAsync())!.RefreshToken;
        var provider = new AccessTokenProvider(store, _http);

        var token = await provider.GetAccessTokenAsync();
        await provider.RefreshAsync(token);

        Assert.Equal(2, _server.RefreshRequests);
        Assert.Equal(original, (await store.ReadAsync())!.RefreshToken);
    }

    [Fact]
    public async Task The_token_is_refreshed_only_inside_the_margin_before_expiry()
    {
        var store = await LoggedInStoreAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var provider = new AccessTokenProvider(store, _http, timeProvider: time);

        var first = await provider.GetAccessTokenAsync();
        time.Advance(TimeSpan.FromSeconds(3600 - 60 - 1));
        var stillCached = await provider.GetAccessTokenAsync();
        // A fresh provider (a new process) uses the access token cached in the store.
        var fromStore = await new AccessTokenProvider(new FileTokenStore(store.Path), _http, timeProvider: time).GetAccessTokenAsync();
        Assert.Equal(1, _server.RefreshRequests);
        Assert.Equal(first, stillCached);
        Assert.Equal(first, fromStore);

        time.Advance(TimeSpan.FromSeconds(2));
        var refreshed = await provider.GetAccessTokenAsync();

        Assert.Equal(2, _server.RefreshRequests);
        Assert.NotEqual(first, refreshed);
    }

    [Fact]
    public async Task The_refresh_margin_is_configurable()
    {
        var store = await LoggedInStoreAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var provider = new AccessTokenProvider(store, _http, new AccessTokenProviderOptions { RefreshMargin = TimeSpan.FromMinutes(10) }, time);

        await provider.GetAccessTokenAsync();
        time.Advance(TimeSpan.FromMinutes(49));
        await provider.GetAccessTokenAsync();
        Assert.Equal(1, _server.RefreshRequests);

        time.Advance(TimeSpan.FromMinutes(2));
        await provider.GetAccessTokenAsync();
        Assert.Equal(2, _server.RefreshRequests);
    }

    [Fact]
    public async Task The_new_tokens_are_persisted_before_the_access_token_is_handed_out()
    {
        var store = await LoggedInStoreAsync();
        var provider = new AccessTokenProvider(new RecordingStore(store), _http);

        var token = await provider.GetAccessTokenAsync();

        var stored = (await store.ReadAsync())!;
        Assert.Equal(token, stored.AccessToken);
        Assert.True(_server.IsValidRefreshToken(stored.RefreshToken));
    }

    [Fact]
    public async Task No_access_token_is_handed_out_when_the_new_refresh_token_cannot_be_persisted()
    {
        var store = await LoggedInStoreAsync();
        var provider = new AccessTokenProvider(new RecordingStore(store) { FailWrites = true }, _http);

        await Assert.ThrowsAsync<IOException>(async () => await provider.GetAccessTokenAsync());
    }

    [Fact]
    public async Task Invalid_grant_asks_for_reauthorization_without_retrying_or_touching_the_store()
    {
        var store = new FileTokenStore(_dir.File("credentials"));
        await store.WriteAsync(Fast.Credentials(_server, "Atzr|revoked"));
        var before = await File.ReadAllBytesAsync(store.Path);
        var provider = new AccessTokenProvider(store, _http);

        await Assert.ThrowsAsync<ReauthorizationRequiredException>(async () => await provider.GetAccessTokenAsync());

        Assert.Equal(1, _server.TokenRequests);
        Assert.Equal(before, await File.ReadAllBytesAsync(store.Path));
    }

    [Fact]
    public async Task An_empty_store_says_to_log_in()
    {
        var provider = new AccessTokenProvider(new FileTokenStore(_dir.File("none")), _http);

        var error = await Assert.ThrowsAsync<TokenStoreException>(async () => await provider.GetAccessTokenAsync());

        Assert.Contains("log in", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_throttled_refresh_is_retried_and_then_succeeds()
    {
        var store = await LoggedInStoreAsync();
        _server.FailNext(2, System.Net.HttpStatusCode.TooManyRequests, retryAfterSeconds: 0);
        var provider = new AccessTokenProvider(store, _http);

        await provider.GetAccessTokenAsync();

        Assert.Equal(3, _server.TokenRequests);
    }

    private sealed class RecordingStore(IRefreshTokenStore inner) : IRefreshTokenStore
    {
        public bool FailWrites { get; init; }

        public ValueTask<StoredCredentials?> ReadAsync(CancellationToken cancellationToken = default) => inner.ReadAsync(cancellationToken);

        public ValueTask WriteAsync(StoredCredentials credentials, CancellationToken cancellationToken = default) =>
            FailWrites ? throw new IOException("disk full") : inner.WriteAsync(credentials, cancellationToken);

        public ValueTask<bool> DeleteAsync(CancellationToken cancellationToken = default) => inner.DeleteAsync(cancellationToken);

        public ValueTask<IAsyncDisposable> AcquireLockAsync(TimeSpan timeout, CancellationToken cancellationToken = default) => inner.AcquireLockAsync(timeout, cancellationToken);
    }
}
