namespace Tollgate.Server.Storage;

/// <summary>
/// The one rule every store applies, under its own lock, to a refresh token presented under the <c>rotate</c> policy
/// (RFC 9700 §4.14), so that SQLite and PostgreSQL cannot drift apart on it.
/// </summary>
internal static class RotationRule
{
    public const string ReuseRevocationReason = "consumed refresh token replayed after the grace window";

    /// <summary>
    /// Unknown, or another client's: nothing happens (a leaked token must not let anyone burn its owner's family).
    /// Its grant revoked: nothing happens. Live: consume it and store a successor. Consumed at most
    /// <paramref name="graceWindow"/> ago (inclusive): the client lost the response or raced itself, so it still gets a
    /// successor in the same grant. Consumed earlier: reuse, which revokes the grant.
    /// </summary>
    public static RotationOutcome Decide(RefreshToken? token, long profileRowId, DateTimeOffset now, TimeSpan graceWindow) =>
        token is null || token.ProfileRowId != profileRowId ? RotationOutcome.Unknown
        : token.GrantRevoked ? RotationOutcome.GrantRevoked
        : token.ConsumedAt is not { } consumedAt ? RotationOutcome.Rotated
        // In whole milliseconds, as the stores keep times.
        : now.ToUnixTimeMilliseconds() - consumedAt.ToUnixTimeMilliseconds() <= (long)graceWindow.TotalMilliseconds ? RotationOutcome.ReplayedWithinGrace
        : RotationOutcome.ReuseDetected;
}
