namespace Tollgate.Server.Storage;

/// <summary>
/// The one rule every store applies, under its own lock, to a presented refresh token of a live grant under the
/// <c>rotate</c> policy (RFC 9700 §4.14), so that SQLite and PostgreSQL cannot drift apart on it.
/// </summary>
internal static class RotationRule
{
    public const string ReuseRevocationReason = "consumed refresh token replayed after the grace window";

    /// <summary>
    /// Live: consume it and store a successor. Consumed at most <paramref name="graceWindow"/> ago (inclusive): the client
    /// lost the response or raced itself, so it still gets a successor in the same grant. Consumed earlier: reuse, which
    /// revokes the grant.
    /// </summary>
    public static RotationOutcome Decide(long? consumedAtMilliseconds, long nowMilliseconds, TimeSpan graceWindow) =>
        consumedAtMilliseconds is null ? RotationOutcome.Rotated
        : nowMilliseconds - consumedAtMilliseconds.Value <= (long)graceWindow.TotalMilliseconds ? RotationOutcome.ReplayedWithinGrace
        : RotationOutcome.ReuseDetected;
}
