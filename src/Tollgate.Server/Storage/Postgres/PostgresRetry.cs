using Npgsql;

namespace Tollgate.Server.Storage.Postgres;

/// <summary>
/// Which failures a store method retries by itself, so that a client never sees them: a serialization
/// failure or deadlock (the database rolled the transaction back and asks for a retry) and a dropped
/// connection (a failover, a restarted server, a pooler closing an idle link).
/// </summary>
/// <remarks>
/// Tollgate's transactions run at READ COMMITTED and decide with row locks and conditional updates, so
/// 40001 should not happen at all (Hydra's #3604 storm comes from SERIALIZABLE on a hot family row); 40P01
/// can, when a profile deletion cascades across rows a rotation holds. Waits that hit
/// <c>lock_timeout</c> (55P03) or a command timeout are not retried: they mean something holds the store
/// far longer than a request should wait, and the caller answers 503 with Retry-After instead.
/// </remarks>
internal static class PostgresRetry
{
    public const int MaxAttempts = 5;

    public static bool IsTransient(Exception e) => e switch
    {
        PostgresException pg => pg.SqlState switch
        {
            "40001" or "40P01" => true, // serialization_failure, deadlock_detected
            "55P03" or "57014" => false, // lock_not_available (lock_timeout), query_canceled (statement_timeout)
            "57P01" or "57P02" or "57P03" => true, // admin_shutdown, crash_shutdown, cannot_connect_now
            _ => pg.SqlState.StartsWith("08", StringComparison.Ordinal), // connection_exception class
        },
        NpgsqlException npgsql => npgsql.IsTransient && npgsql.InnerException is not TimeoutException,
        _ => false,
    };

    /// <summary>Exponential backoff with full jitter: about 10, 20, 40, 80 ms, so racing nodes spread out.</summary>
    public static TimeSpan Backoff(int attempt) =>
        TimeSpan.FromMilliseconds(Random.Shared.Next(5, 10 << Math.Min(attempt - 1, 6)));
}
