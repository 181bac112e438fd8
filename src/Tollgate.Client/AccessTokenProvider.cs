namespace Tollgate.Client;

/// <summary>Settings of an <see cref="AccessTokenProvider"/>.</summary>
public sealed class AccessTokenProviderOptions
{
    /// <summary>
    /// How long before its expiry an access token is refreshed. Default 60 s, as Amazon's SDKs do. Keep it well below
    /// the access token lifetime (3600 s at Amazon and Tollgate).
    /// </summary>
    public TimeSpan RefreshMargin { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How long to wait for another process's refresh (the store's lock). Default 60 s.</summary>
    public TimeSpan LockTimeout { get; set; } = TimeSpan.FromSeconds(60);
}

/// <summary>
/// Hands out a valid access token, refreshing it from the stored refresh token only when needed.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>The access token is cached in memory and in the store; it is refreshed <see cref="AccessTokenProviderOptions.RefreshMargin"/>
/// before it expires.</item>
/// <item>One refresh at a time: callers in this process share one refresh (single flight), and processes sharing the
/// store take its lock (<see cref="IRefreshTokenStore.AcquireLockAsync"/>). After taking the lock the store is read
/// again, so a refresh another process just did is used rather than repeated, and the refresh always starts from the
/// refresh token returned last.</item>
/// <item>The new refresh token and access token are persisted before the access token is handed out.</item>
/// <item>A refresh, once started, is not abandoned when a caller's cancellation token fires: it runs to the end and
/// persists its result, so that a rotated refresh token is not lost.</item>
/// </list>
/// Instances are thread-safe; use one per store.
/// </remarks>
public sealed class AccessTokenProvider
{
    private readonly IRefreshTokenStore _store;
    private readonly HttpClient _http;
    private readonly AccessTokenProviderOptions _options;
    private readonly TimeProvider _time;
    private readonly Lock _sync = new();
    private volatile CachedToken? _cached;
    private Task<CachedToken>? _inflight;

    /// <summary>Creates a provider.</summary>
    /// <param name="store">Where the credentials live (written by <c>tollgate login</c> or by the application).</param>
    /// <param name="httpClient">Client for the token endpoint, normally from <see cref="TokenClient.CreateHttpClient"/>
    /// (with retries). It must not carry a <see cref="BearerTokenHandler"/>. Not disposed by this class.</param>
    /// <param name="options">Settings; defaults when <see langword="null"/>.</param>
    /// <param name="timeProvider">The clock; <see cref="TimeProvider.System"/> when <see langword="null"/>.</param>
    public AccessTokenProvider(IRefreshTokenStore store, HttpClient httpClient, AccessTokenProviderOptions? options = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(httpClient);
        _store = store;
        _http = httpClient;
        _options = options ?? new AccessTokenProviderOptions();
        _time = timeProvider ?? TimeProvider.System;
    }

    /// <summary>Returns a valid access token, refreshing it first when it is missing or about to expire.</summary>
    /// <param name="cancellationToken">Stops waiting (a refresh already under way still completes and is stored).</param>
    /// <exception cref="ReauthorizationRequiredException">The refresh token is no longer valid: log in again.</exception>
    /// <exception cref="TokenErrorException">The token endpoint failed, after retries.</exception>
    /// <exception cref="TokenStoreException">Nothing is stored, or the store is corrupt.</exception>
    public ValueTask<string> GetAccessTokenAsync(CancellationToken cancellationToken = default)
    {
        var cached = _cached;
        if (cached is not null && IsFresh(cached.ExpiresAt))
            return ValueTask.FromResult(cached.Token);
        return SlowAsync(rejected: null, cancellationToken);
    }

    /// <summary>
    /// Returns an access token other than <paramref name="rejectedAccessToken"/>, which a resource server refused
    /// (HTTP 401): if another caller or process has already replaced it, that token is returned; otherwise the token
    /// is refreshed now, whatever its expiry says.
    /// </summary>
    /// <param name="rejectedAccessToken">The access token that was refused.</param>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <exception cref="ReauthorizationRequiredException">The refresh token is no longer valid: log in again.</exception>
    /// <exception cref="TokenErrorException">The token endpoint failed, after retries.</exception>
    /// <exception cref="TokenStoreException">Nothing is stored, or the store is corrupt.</exception>
    public ValueTask<string> RefreshAsync(string rejectedAccessToken, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(rejectedAccessToken);
        return SlowAsync(rejectedAccessToken, cancellationToken);
    }

    private async ValueTask<string> SlowAsync(string? rejected, CancellationToken cancellationToken)
    {
        // At most two rounds: a caller may join a refresh that started before its token was rejected.
        for (var round = 0; ; round++)
        {
            Task<CachedToken> flight;
            lock (_sync)
            {
                var cached = _cached;
                if (cached is not null && IsFresh(cached.ExpiresAt) && cached.Token != rejected)
                    return cached.Token;
                if (_inflight is null || _inflight.IsCompleted)
                    _inflight = Task.Run(() => ObtainAsync(rejected), CancellationToken.None);
                flight = _inflight;
            }
            var result = await flight.WaitAsync(cancellationToken);
            if (result.Token != rejected || round > 0)
                return result.Token;
        }
    }

    private async Task<CachedToken> ObtainAsync(string? rejected)
    {
        // The refresh is not cancellable: a response lost to cancellation would cost a rotated refresh token.
        var ct = CancellationToken.None;

        // Another process may have refreshed already; the cached access token in the store is enough then.
        var stored = await _store.ReadAsync(ct) ?? throw NotLoggedIn();
        if (Usable(stored, rejected) is { } fromStore)
            return Remember(fromStore);

        await using (await _store.AcquireLockAsync(_options.LockTimeout, ct))
        {
            // Re-read under the lock: the refresh token may have been rotated by the previous lock holder.
            stored = await _store.ReadAsync(ct) ?? throw NotLoggedIn();
            if (Usable(stored, rejected) is { } refreshedElsewhere)
                return Remember(refreshedElsewhere);

            var client = new TokenClient(_http, new TokenClientOptions
            {
                TokenEndpoint = stored.TokenEndpoint,
                ClientId = stored.ClientId,
                ClientSecret = stored.ClientSecret,
            });
            var requestedAt = _time.GetUtcNow();
            var response = await client.RefreshAsync(stored.RefreshToken, ct);
            var updated = stored with
            {
                // Servers that do not rotate return no refresh token or the same one; keep the one returned last.
                RefreshToken = response.RefreshToken ?? stored.RefreshToken,
                AccessToken = response.AccessToken,
                // Counted from before the request was sent, so the token never outlives what the server meant.
                AccessTokenExpiresAt = requestedAt + response.ExpiresIn,
                Scope = response.Scope ?? stored.Scope,
            };
            // Persist before anyone sees the new access token.
            await _store.WriteAsync(updated, ct);
            return Remember(new CachedToken(response.AccessToken, updated.AccessTokenExpiresAt.Value));
        }
    }

    private CachedToken? Usable(StoredCredentials stored, string? rejected) =>
        stored.AccessToken is { } token && stored.AccessTokenExpiresAt is { } expiresAt && IsFresh(expiresAt) && token != rejected
            ? new CachedToken(token, expiresAt)
            : null;

    private CachedToken Remember(CachedToken token)
    {
        _cached = token;
        return token;
    }

    private bool IsFresh(DateTimeOffset expiresAt) => _time.GetUtcNow() < expiresAt - _options.RefreshMargin;

    private TokenStoreException NotLoggedIn() =>
        new(_store is FileTokenStore file
            ? $"No credentials are stored in {file.Path}; log in first (tollgate login)."
            : "No credentials are stored; log in first (tollgate login).");

    private sealed record CachedToken(string Token, DateTimeOffset ExpiresAt);
}
