using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tollgate.Server.Crypto;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;
using Tollgate.Server.Telemetry;

namespace Tollgate.Server.Audit;

/// <summary>The names of recorded security events; <c>tollgate audit --event NAME</c> filters by them.</summary>
internal static class AuditEvents
{
    /// <summary>A token request whose client authentication failed (unknown client id, wrong or expired secret).</summary>
    public const string ClientAuthenticationFailed = "client_authentication_failed";

    /// <summary>An authorization code presented a second time; the grant it produced is revoked.</summary>
    public const string CodeReplay = "code_replay";

    /// <summary>A rotated refresh token replayed after the grace window; its whole family (grant) is revoked.</summary>
    public const string FamilyRevoked = "family_revoked";

    /// <summary>A client secret was replaced (the old one keeps working for its overlap period).</summary>
    public const string SecretRotated = "secret_rotated";

    /// <summary>A security profile was deleted, and every grant and token with it.</summary>
    public const string ProfileDeleted = "profile_deleted";

    /// <summary>A user's sign-in failed (wrong password, unknown email).</summary>
    public const string SignInFailed = "sign_in_failed";

    /// <summary>A security profile's rate limit changed.</summary>
    public const string RateLimitChanged = "rate_limit_changed";

    /// <summary>An access-token key was added to the ring.</summary>
    public const string KeyRotated = "key_rotated";
}

/// <summary>
/// Records security events without making requests wait: <see cref="Record(AuditEvent)"/> only enqueues, and a
/// background loop appends whatever is queued in one store write that rides the group commit (no fsync of its own).
/// </summary>
/// <remarks>
/// If the store is unavailable the batch is kept and retried, so an outage loses no events unless the queue
/// (<see cref="Capacity"/> events) fills up; overflow is counted in <c>tollgate.audit.dropped</c> and logged.
/// Events still queued when the process is killed with SIGKILL are lost (at most about one commit's worth);
/// a graceful stop flushes them. Values never hold tokens or secrets: client ids that look like a token or secret
/// (pasted into the wrong field) are stored as a short hash.
/// </remarks>
internal sealed class AuditTrail(ITokenStore store, TimeProvider time, ILogger<AuditTrail> logger) : BackgroundService
{
    public const int Capacity = 50_000;
    private const int MaxBatch = 500;

    private readonly Channel<AuditEvent> _queue = Channel.CreateBounded<AuditEvent>(
        new BoundedChannelOptions(Capacity) { SingleReader = true, FullMode = BoundedChannelFullMode.DropWrite });
    private long _pending;
    private long _dropped;

    /// <summary>Events accepted but not yet durable.</summary>
    public long Pending => Interlocked.Read(ref _pending);

    public void Record(AuditEvent auditEvent)
    {
        Interlocked.Increment(ref _pending);
        if (_queue.Writer.TryWrite(auditEvent))
        {
            TollgateTelemetry.AuditEvents.Add(1, new KeyValuePair<string, object?>("event", auditEvent.Event));
            return;
        }
        Interlocked.Decrement(ref _pending);
        TollgateTelemetry.AuditDropped.Add(1);
        // Log the first drop and then one in a thousand, so a flood cannot turn into a log flood.
        if (Interlocked.Increment(ref _dropped) % 1000 == 1)
        {
            logger.LogError("Audit queue full ({Capacity} events): dropped {Event}", Capacity, auditEvent.Event);
        }
    }

    /// <summary>Records an event of the request <paramref name="http"/>: its time, remote address and request id.</summary>
    public void Record(HttpContext http, string eventName, string? clientId, string? userId, string? detail) =>
        Record(new AuditEvent(time.GetUtcNow(), eventName, SafeClientId(clientId), userId,
            http.Connection.RemoteIpAddress?.ToString(), http.TraceIdentifier, detail));

    /// <summary>Waits until everything recorded so far is durable (tests, and a graceful stop).</summary>
    public async Task FlushAsync(TimeSpan timeout)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (Pending > 0 && waited.Elapsed < timeout)
        {
            await Task.Delay(10, CancellationToken.None);
        }
    }

    /// <summary>Client ids are not secret, but what a client sends as one might be (a token or a secret in the wrong field).</summary>
    internal static string? SafeClientId(string? clientId)
    {
        if (clientId is null)
        {
            return null;
        }
        bool looksSecret = clientId.StartsWith("Atza|", StringComparison.Ordinal) || clientId.StartsWith("Atzr|", StringComparison.Ordinal)
            || clientId.StartsWith("amzn1.oa2-cs", StringComparison.Ordinal) || (clientId.Length >= 40 && clientId.All(char.IsAsciiHexDigit));
        return looksSecret ? "sha256:" + Secrets.ShortHash(clientId) : TokenRequestReader.Printable(clientId.Length > 128 ? clientId[..128] : clientId);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var batch = new List<AuditEvent>(MaxBatch);
        var reader = _queue.Reader;
        try
        {
            while (await reader.WaitToReadAsync(stoppingToken))
            {
                await DrainAsync(batch, reader, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping: flush what is queued, once, without waiting on a store that is down.
            try
            {
                await DrainAsync(batch, reader, CancellationToken.None, retry: false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogError("Audit trail: {Count} events not written at shutdown: {Error}", Pending, e.Message);
            }
        }
    }

    private async Task DrainAsync(List<AuditEvent> batch, ChannelReader<AuditEvent> reader, CancellationToken ct, bool retry = true)
    {
        while (true)
        {
            batch.Clear();
            while (batch.Count < MaxBatch && reader.TryRead(out var next))
            {
                batch.Add(next);
            }
            if (batch.Count == 0)
            {
                return;
            }
            var delay = TimeSpan.FromMilliseconds(100);
            while (true)
            {
                try
                {
                    await store.AppendAuditEventsAsync(batch.ToArray(), CancellationToken.None);
                    Interlocked.Add(ref _pending, -batch.Count);
                    break;
                }
                catch (Exception e) when (retry && e is not OperationCanceledException)
                {
                    // The store is unavailable: keep the batch and retry with backoff, so an outage loses nothing.
                    logger.LogWarning("Audit trail: store unavailable, retrying {Count} events: {Error}", batch.Count, e.Message);
                    await Task.Delay(delay, ct);
                    delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
                }
            }
        }
    }
}
