namespace Tollgate.Server.Storage;

/// <summary>A security profile as the console and <c>profile list</c> show it.</summary>
internal sealed record ProfileSummary(
    long RowId,
    string ClientId,
    string AppId,
    string Name,
    bool IsPublic,
    RefreshPolicy RefreshPolicy,
    long? OwnerUserRowId,
    DateTimeOffset CreatedAt,
    int ActiveGrants);

/// <summary>A client secret's metadata (never its hash): when it was made and when it stops working.</summary>
internal sealed record ClientSecretInfo(long Id, DateTimeOffset CreatedAt, DateTimeOffset? ExpiresAt);

internal enum ReturnUrlRemoval
{
    Removed,
    NotFound,
    LastOne,
}

/// <summary>An application that holds access for a person: its name, the scopes, since when.</summary>
internal sealed record UserApp(string ClientId, string Name, string Scope, DateTimeOffset Since, int ActiveGrants);

internal sealed record NewDeviceCode(
    byte[] DeviceCodeHash,
    string UserCode,
    long ProfileRowId,
    string Scope,
    TimeSpan Interval,
    DateTimeOffset CreatedAt,
    DateTimeOffset ExpiresAt);

internal sealed record PendingDeviceCode(long ProfileRowId, string ClientId, string Scope, DateTimeOffset ExpiresAt);

internal enum DevicePollOutcome
{
    /// <summary>The person approved; a grant and its refresh token now exist.</summary>
    Approved,

    /// <summary>No decision yet.</summary>
    Pending,

    /// <summary>Polled sooner than the interval allows.</summary>
    SlowDown,

    Denied,

    Expired,

    /// <summary>Unknown device code, a user code that does not belong to it, or a pair already used.</summary>
    Unknown,
}

internal sealed record DevicePoll(DevicePollOutcome Outcome, long GrantId = 0, string? ClientId = null, string? UserId = null, string? Scope = null);

/// <summary>Failed sign-ins for one throttling key in its current window.</summary>
internal readonly record struct SignInFailures(int Count, DateTimeOffset WindowStart);

internal sealed record TokenActivityDelta(string ClientId, DateTimeOffset Hour, int Issued, int Refused);

internal sealed record TokenActivityHour(DateTimeOffset Hour, long Issued, long Refused);
