using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
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
/// Unknown client ids are not cached: an attacker sending random ids cannot grow memory. The cache is
/// bounded for the same reason.
/// </remarks>
internal sealed class ProfileCache(ITokenStore store, TollgateOptions options, ILogger<ProfileCache> logger) : BackgroundService
{
    private const int MaxEntries = 100_000;
    private readonly ConcurrentDictionary<string, Profile> _profiles = new(StringComparer.Ordinal);
    private long _generation = -1;

    public async ValueTask<Profile?> FindAsync(string clientId, CancellationToken ct)
    {
        if (_profiles.TryGetValue(clientId, out var cached))
        {
            return cached;
        }
        long generationBefore = Volatile.Read(ref _generation);
        var profile = await store.FindProfileAsync(clientId, ct);
        // Cache only if no invalidation happened while we read, so a stale row never outlives a refresh.
        if (profile is not null && generationBefore == Volatile.Read(ref _generation) && _profiles.Count < MaxEntries)
        {
            _profiles[clientId] = profile;
        }
        return profile;
    }

    /// <summary>Drops everything; called after this process changes a profile itself.</summary>
    public void Invalidate()
    {
        Interlocked.Increment(ref _generation);
        _profiles.Clear();
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
