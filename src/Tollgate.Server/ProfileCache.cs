using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tollgate.Server.Crypto;
using Tollgate.Server.Storage;

namespace Tollgate.Server;

/// <summary>
/// Security profiles are read on every token request and change rarely, so each node keeps them
/// in memory. Any change to any profile bumps a generation number in the store; a background loop
/// reads it every <see cref="TollgateOptions.ProfileCacheRefreshMilliseconds"/> and drops the
/// cache when it moved. A profile deleted or a secret rotated by another process (the admin CLI,
/// another node) is therefore honoured here within that interval, and the hot path never waits on it.
/// On PostgreSQL the same change also raises a NOTIFY that wakes the loop at once, so nodes usually
/// agree within milliseconds; the poll stays as the guarantee, because a notification sent while the
/// listening connection is down is lost (docs/multi-node.md).
/// </summary>
/// <remarks>
/// The same generation guards a second cache: which grants are active, for tokeninfo, which would
/// otherwise read the store on every call. Only "active" is cached (a revoked grant never comes back);
/// revoking a grant bumps the generation, so another node forgets within the same interval, and this
/// node forgets at once (<see cref="Invalidate"/> is called after the revocation is durable).
/// A third cache, under the same generation, holds live refresh tokens of <c>reuse</c>-policy clients by
/// their SHA-256 (never the token itself), so Amazon's common case, the same refresh token presented again
/// and again, costs no store read. What could make an entry wrong bumps the generation: revoking its grant,
/// deleting or changing its profile (which also covers a switch from reuse to rotate).
/// Unknown client ids are not cached: an attacker sending random ids cannot grow memory. The cache is
/// bounded for the same reason.
/// </remarks>
internal sealed class ProfileCache(ITokenStore store, TollgateOptions options, ILogger<ProfileCache> logger) : BackgroundService
{
    private const int MaxEntries = 100_000;
    private const int MaxGrantEntries = 200_000;
    private readonly ConcurrentDictionary<string, Profile> _profiles = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<long, bool> _activeGrants = new();
    private readonly ConcurrentDictionary<TokenKey, RefreshToken> _reusableTokens = new();

    /// <summary>
    /// The SHA-256 at the end of a store key (<see cref="Secrets.StoreKey"/>) as four words: a dictionary key that
    /// compares by value without a custom comparer.
    /// </summary>
    private readonly record struct TokenKey(ulong A, ulong B, ulong C, ulong D)
    {
        public static TokenKey Of(byte[] storeKey)
        {
            int at = storeKey.Length - Secrets.HashLength;
            return new(BitConverter.ToUInt64(storeKey, at), BitConverter.ToUInt64(storeKey, at + 8),
                BitConverter.ToUInt64(storeKey, at + 16), BitConverter.ToUInt64(storeKey, at + 24));
        }
    }
    private long _generation = -1;

    public async ValueTask<Profile?> FindAsync(string clientId, CancellationToken ct)
    {
        if (_profiles.TryGetValue(clientId, out var cached))
        {
            return cached;
        }
        long generationBefore = Volatile.Read(ref _generation);
        var profile = await store.FindProfileAsync(clientId, ct);
        if (profile is not null && StillCurrent(generationBefore) && _profiles.Count < MaxEntries)
        {
            _profiles[clientId] = profile;
        }
        return profile;
    }

    /// <summary>True while the grant exists and is not revoked.</summary>
    public async ValueTask<bool> IsGrantActiveAsync(long grantId, CancellationToken ct)
    {
        if (_activeGrants.ContainsKey(grantId))
        {
            return true;
        }
        long generationBefore = Volatile.Read(ref _generation);
        bool active = await store.IsGrantActiveAsync(grantId, ct);
        if (active && StillCurrent(generationBefore))
        {
            AddBounded(_activeGrants, grantId, true);
        }
        return active;
    }

    /// <summary>A refresh token of a reuse-policy client, by its hash; live ones are cached.</summary>
    public async ValueTask<RefreshToken?> FindReusableRefreshTokenAsync(byte[] tokenHash, CancellationToken ct)
    {
        var key = TokenKey.Of(tokenHash);
        if (_reusableTokens.TryGetValue(key, out var cached))
        {
            return cached;
        }
        long generationBefore = Volatile.Read(ref _generation);
        var token = await store.FindRefreshTokenAsync(tokenHash, ct);
        if (token is { ConsumedAt: null, GrantRevoked: false } && StillCurrent(generationBefore))
        {
            AddBounded(_reusableTokens, key, token);
        }
        return token;
    }

    /// <summary>
    /// Whether a value read since <paramref name="generationBefore"/> may be cached: only if no invalidation happened
    /// while it was read, so a stale row (a deleted profile, a revoked grant) never outlives a refresh.
    /// </summary>
    private bool StillCurrent(long generationBefore) => generationBefore == Volatile.Read(ref _generation);

    /// <summary>Bounded memory: a full cache starts over; the hot entries come back on their next use.</summary>
    private static void AddBounded<TKey, TValue>(ConcurrentDictionary<TKey, TValue> cache, TKey key, TValue value)
        where TKey : notnull
    {
        if (cache.Count >= MaxGrantEntries)
        {
            cache.Clear();
        }
        cache[key] = value;
    }

    /// <summary>Drops everything; called after this process changes a profile or revokes a grant itself.</summary>
    public void Invalidate()
    {
        Interlocked.Increment(ref _generation);
        _profiles.Clear();
        _activeGrants.Clear();
        _reusableTokens.Clear();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = TimeSpan.FromMilliseconds(options.ProfileCacheRefreshMilliseconds);
        long seen = long.MinValue;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                long current = await store.GetProfileGenerationAsync(stoppingToken);
                if (current != seen)
                {
                    seen = current;
                    Invalidate();
                }
                // Returns early when the store hears of a change (PostgreSQL's NOTIFY), else after the interval.
                await store.WaitForProfileChangeAsync(interval, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The store is unavailable; serving from a cache we cannot refresh could honour a deleted
                // profile indefinitely, so forget it and let requests see the store's error themselves.
                Invalidate();
                seen = long.MinValue;
                logger.LogWarning("Profile cache could not read the store: {Error}", e.Message);
                try
                {
                    await Task.Delay(interval, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }
}
