using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Tollgate.Server.Telemetry;

/// <summary>
/// Tollgate's own metrics and trace spans, under one name (<c>Tollgate</c>) that the OpenTelemetry set-up
/// subscribes to. Instruments are static because the store's writer, which counts commits, lives below
/// dependency injection; an instrument with no listener costs a branch per call.
/// </summary>
/// <remarks>Tags are bounded sets (grant types, error codes, event names) so a hostile client cannot grow the series count.</remarks>
internal static class TollgateTelemetry
{
    public const string Name = "Tollgate";

    public static readonly ActivitySource Source = new(Name);

    public static readonly Meter Meter = new(Name);

    private static readonly double[] SecondsBuckets =
        [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private static readonly long[] BatchBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256];

    public static readonly Counter<long> TokensIssued = Meter.CreateCounter<long>(
        "tollgate.tokens.issued", "{token}", "Access tokens issued, by grant type");

    public static readonly Counter<long> Errors = Meter.CreateCounter<long>(
        "tollgate.errors", "{error}", "Protocol errors answered, by error code and HTTP status");

    public static readonly Histogram<double> TokenDuration = Meter.CreateHistogram(
        "tollgate.token.duration", "s", "Token endpoint latency, by grant type and outcome",
        tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });

    public static readonly Histogram<long> CommitBatchSize = Meter.CreateHistogram(
        "tollgate.store.commit.batch_size", "{write}", "Writes that shared one group commit",
        tags: null, advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = BatchBuckets });

    public static readonly Histogram<double> CommitDuration = Meter.CreateHistogram(
        "tollgate.store.commit.duration", "s", "Time from BEGIN to durable COMMIT of one group commit (PostgreSQL: of one batch statement, round trip included)",
        tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });

    public static readonly Counter<long> CommitFailures = Meter.CreateCounter<long>(
        "tollgate.store.commit.failures", "{commit}", "Group commits that failed (store unavailable); their writes answered 503");

    public static readonly Counter<long> WalRestarts = Meter.CreateCounter<long>(
        "tollgate.store.wal.restarts", "{restart}", "Times the SQLite writer sent the WAL back to its start (see GroupCommitWriter.RestartWal)");

    public static readonly Histogram<double> WalRestartDuration = Meter.CreateHistogram(
        "tollgate.store.wal.restart.duration", "s", "How long each WAL restart held up the SQLite writer, and every write waiting on it",
        tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });

    public static readonly Counter<long> Throttled = Meter.CreateCounter<long>(
        "tollgate.throttled", "{request}", "Requests refused with 429, by limit");

    public static readonly Counter<long> AuditEvents = Meter.CreateCounter<long>(
        "tollgate.audit.events", "{event}", "Security events recorded, by event");

    public static readonly Counter<long> AuditDropped = Meter.CreateCounter<long>(
        "tollgate.audit.dropped", "{event}", "Security events dropped because the audit queue was full");

    /// <summary>The grant types we implement, else "other", so the tag set stays bounded.</summary>
    public static string GrantTag(string? grantType) => grantType switch
    {
        "authorization_code" or "refresh_token" or "client_credentials" or "device_code" => grantType,
        null => "none",
        _ => "other",
    };
}
