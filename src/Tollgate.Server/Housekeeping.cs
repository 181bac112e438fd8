using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tollgate.Server.Storage;

namespace Tollgate.Server;

/// <summary>
/// Keeps the token tables from growing without bound (the top complaint in Hydra's and Keycloak's trackers):
/// every <see cref="TollgateOptions.PruneIntervalSeconds"/> it deletes expired codes, consumed refresh tokens
/// and revoked grants older than <see cref="TollgateOptions.PruneRetentionSeconds"/>, in small batches.
/// </summary>
/// <remarks>
/// Every node runs this job; the store lets one at a time do the work (an advisory lock on PostgreSQL, the single
/// writer on SQLite) and the others skip the round. Progress goes to the log and to the <c>Tollgate</c> meter
/// (<c>tollgate.prune.deleted</c> by kind, <c>tollgate.prune.runs</c> by outcome).
/// </remarks>
internal sealed class Housekeeping(ITokenStore store, TollgateOptions options, TimeProvider time, ILogger<Housekeeping> logger) : BackgroundService
{
    public const string MeterName = "Tollgate";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> Deleted = Meter.CreateCounter<long>("tollgate.prune.deleted", "{row}", "Rows deleted by housekeeping");
    private static readonly Counter<long> Runs = Meter.CreateCounter<long>("tollgate.prune.runs", "{run}", "Housekeeping runs by outcome");

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (options.PruneIntervalSeconds == 0)
        {
            return;
        }
        var interval = TimeSpan.FromSeconds(options.PruneIntervalSeconds);
        // The first run comes one interval (less a random part) after start, so nodes restarted together
        // neither slow their own start-up nor all try at the same moment.
        var firstDelay = interval - TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * interval.TotalMilliseconds / 2);
        try
        {
            await Task.Delay(firstDelay, stoppingToken);
            using var timer = new PeriodicTimer(interval);
            do
            {
                await RunOnceAsync(stoppingToken);
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Shutting down; a batch in flight was rolled back or committed whole.
        }
    }

    /// <summary>One pass over the store; the CLI's <c>tollgate db prune</c> runs the same.</summary>
    public async Task<PruneResult> RunOnceAsync(CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            var previous = PruneResult.None;
            var result = await store.PruneAsync(new PrunePolicy(time.GetUtcNow(), options.PruneRetention, options.PruneBatchSize), progress =>
            {
                Deleted.Add(progress.Codes - previous.Codes, new KeyValuePair<string, object?>("kind", "codes"));
                Deleted.Add(progress.RefreshTokens - previous.RefreshTokens, new KeyValuePair<string, object?>("kind", "refresh_tokens"));
                Deleted.Add(progress.Grants - previous.Grants, new KeyValuePair<string, object?>("kind", "grants"));
                previous = progress;
                if (progress.Batches % 10 == 0)
                {
                    logger.LogInformation("Housekeeping in progress: {Batches} batches, {Codes} codes, {RefreshTokens} refresh tokens, {Grants} grants deleted",
                        progress.Batches, progress.Codes, progress.RefreshTokens, progress.Grants);
                }
            }, ct);
            Runs.Add(1, new KeyValuePair<string, object?>("outcome", result.Skipped ? "skipped" : "completed"));
            if (result.Skipped)
            {
                logger.LogDebug("Housekeeping skipped: another node is pruning");
            }
            else
            {
                logger.LogInformation(
                    "Housekeeping done in {Milliseconds} ms: {Codes} expired codes, {RefreshTokens} consumed refresh tokens, {Grants} revoked grants deleted in {Batches} batches",
                    (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds, result.Codes, result.RefreshTokens, result.Grants, result.Batches);
            }
            return result;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The store is unavailable or a batch failed; what was committed stays deleted, the rest waits for the next run.
            Runs.Add(1, new KeyValuePair<string, object?>("outcome", "failed"));
            logger.LogWarning("Housekeeping failed, will retry next interval: {Error}", e.Message);
            return PruneResult.None;
        }
    }
}
