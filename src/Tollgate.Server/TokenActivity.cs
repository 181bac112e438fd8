using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tollgate.Server.Storage;

namespace Tollgate.Server;

/// <summary>
/// Counts token requests issued and refused per security profile and hour, for the developer console's
/// chart. Counting is two interlocked increments in memory; a background loop adds the counts to the
/// store every few seconds (and at shutdown), so the token endpoint never waits on a write for it.
/// </summary>
/// <remarks>
/// Refusals are counted under the client id the request claimed; ids that match no profile are dropped
/// by the store, and the number of distinct pending keys is bounded, so random ids cannot grow memory.
/// A crash loses at most one flush interval of counts, which a chart can afford.
/// </remarks>
internal sealed class TokenActivity(ITokenStore store, TimeProvider time, ILogger<TokenActivity> logger) : BackgroundService
{
    private const int MaxPendingKeys = 10_000;
    private const long HourMilliseconds = 3_600_000;
    private static readonly TimeSpan FlushInterval = TimeSpan.FromSeconds(5);

    private readonly ConcurrentDictionary<(string ClientId, long Hour), Counts> _pending = new();
    private readonly SemaphoreSlim _flushing = new(1, 1);

    public void Record(string? clientId, bool issued)
    {
        if (string.IsNullOrEmpty(clientId) || clientId.Length > 256)
        {
            return;
        }
        var key = (clientId, CurrentHour());
        if (!_pending.TryGetValue(key, out var counts))
        {
            if (_pending.Count >= MaxPendingKeys)
            {
                return;
            }
            counts = _pending.GetOrAdd(key, _ => new Counts());
        }
        if (issued)
        {
            Interlocked.Increment(ref counts.Issued);
        }
        else
        {
            Interlocked.Increment(ref counts.Refused);
        }
    }

    /// <summary>Moves every pending count to the store; the console calls it before drawing a chart.</summary>
    public async Task FlushAsync(CancellationToken ct)
    {
        await _flushing.WaitAsync(ct);
        try
        {
            long currentHour = CurrentHour();
            var deltas = new List<TokenActivityDelta>();
            foreach (var (key, counts) in _pending)
            {
                // Take the counts atomically; increments racing this land in the next flush.
                int issued = Interlocked.Exchange(ref counts.Issued, 0);
                int refused = Interlocked.Exchange(ref counts.Refused, 0);
                if (key.Hour < currentHour)
                {
                    _pending.TryRemove(key, out _);
                }
                if (issued + refused > 0)
                {
                    deltas.Add(new TokenActivityDelta(key.ClientId, DateTimeOffset.FromUnixTimeMilliseconds(key.Hour), issued, refused));
                }
            }
            if (deltas.Count > 0)
            {
                await store.AddTokenActivityAsync(deltas, ct);
            }
        }
        finally
        {
            _flushing.Release();
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(FlushInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                await TryFlushAsync(stoppingToken);
            }
        }
        catch (OperationCanceledException)
        {
            // Shutting down; StopAsync flushes what is left.
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        await TryFlushAsync(CancellationToken.None);
    }

    public override void Dispose()
    {
        _flushing.Dispose();
        base.Dispose();
    }

    private async Task TryFlushAsync(CancellationToken ct)
    {
        try
        {
            await FlushAsync(ct);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogWarning("Token activity could not be saved: {Error}", e.Message);
        }
    }

    /// <summary>The start of the current hour, in Unix milliseconds: the chart's bucket.</summary>
    private long CurrentHour() => time.GetUtcNow().ToUnixTimeMilliseconds() / HourMilliseconds * HourMilliseconds;

    private sealed class Counts
    {
        public int Issued;
        public int Refused;
    }
}
