namespace Tollgate.Server.Storage;

/// <summary>What a security profile does with a refresh token when it is used.</summary>
internal enum RefreshPolicy
{
    /// <summary>The token stays valid until revoked (Amazon's behaviour); default for confidential clients.</summary>
    Reuse,

    /// <summary>Each use consumes the token and returns a successor; default for public clients.</summary>
    Rotate,
}

internal static class RefreshPolicyNames
{
    public static string ToName(this RefreshPolicy policy) => policy == RefreshPolicy.Rotate ? "rotate" : "reuse";

    public static RefreshPolicy? Parse(string? name) => name switch
    {
        "reuse" => RefreshPolicy.Reuse,
        "rotate" => RefreshPolicy.Rotate,
        _ => null,
    };
}

/// <summary>A client secret as stored: its SHA-256, and when it stops working (null: never).</summary>
internal sealed record ClientSecretHash(byte[] Hash, DateTimeOffset? ExpiresAt);

/// <summary>A security profile (an OAuth client).</summary>
internal sealed record Profile(
    long RowId,
    string ClientId,
    string AppId,
    string Name,
    bool IsPublic,
    RefreshPolicy RefreshPolicy,
    IReadOnlyList<string> ReturnUrls,
    IReadOnlySet<string> RegisteredScopes,
    IReadOnlyList<ClientSecretHash> Secrets)
{
    /// <summary>Token requests per minute for this profile: null follows the server's default, 0 is unlimited.</summary>
    public int? RateLimitPerMinute { get; init; }
}

internal sealed record NewProfile(
    string ClientId,
    string AppId,
    string Name,
    bool IsPublic,
    RefreshPolicy RefreshPolicy,
    IReadOnlyList<string> ReturnUrls,
    IReadOnlyList<string> RegisteredScopes,
    byte[]? SecretHash,
    DateTimeOffset CreatedAt);

internal sealed record User(long RowId, string UserId, string Email, string Name, string PasswordHash);

internal sealed record NewUser(string UserId, string Email, string Name, string PasswordHash, DateTimeOffset CreatedAt);

internal sealed record NewCode(
    byte[] CodeHash,
    long ProfileRowId,
    long UserRowId,
    string RedirectUri,
    string Scope,
    string? CodeChallenge,
    string? CodeChallengeMethod,
    DateTimeOffset CreatedAt,
    DateTimeOffset ExpiresAt);

internal sealed record AuthorizationCode(
    long ProfileRowId,
    string UserId,
    string RedirectUri,
    string Scope,
    string? CodeChallenge,
    string? CodeChallengeMethod,
    DateTimeOffset ExpiresAt,
    bool Redeemed);

internal enum CodeRedemptionOutcome
{
    Redeemed,

    /// <summary>The code had been redeemed before; the grant it produced is now revoked.</summary>
    Replayed,

    /// <summary>Unknown, or issued to another client: nothing changed.</summary>
    Unknown,

    /// <summary>The caller's check refused the code (expired, another redirect URI, PKCE): nothing changed.</summary>
    Refused,
}

/// <summary>What a redemption did, with the code as it was read (null when unknown), so the caller needs no read of its own.</summary>
internal readonly record struct CodeRedemption(CodeRedemptionOutcome Outcome, long GrantId, AuthorizationCode? Code);

/// <summary>A refresh token as found by its hash, with the grant it belongs to.</summary>
internal sealed record RefreshToken(
    long GrantId,
    long ProfileRowId,
    string UserId,
    string Scope,
    DateTimeOffset? ConsumedAt,
    bool GrantRevoked);

/// <summary>What a rotation did, and the presented token as it was before (null when unknown or another client's).</summary>
internal sealed record Rotation(RotationOutcome Outcome, RefreshToken? Token);

internal enum RotationOutcome
{
    /// <summary>The token was live; it is now consumed and the successor stored.</summary>
    Rotated,

    /// <summary>The token was consumed within the grace window; a successor was stored anyway.</summary>
    ReplayedWithinGrace,

    /// <summary>The token was consumed before the grace window; its whole grant is now revoked.</summary>
    ReuseDetected,

    /// <summary>The grant was already revoked.</summary>
    GrantRevoked,

    Unknown,
}

internal sealed record AccessTokenKeys(IReadOnlyDictionary<int, byte[]> Keys, int CurrentKeyId);

internal sealed record SchemaStatus(int CurrentVersion, int LatestVersion)
{
    public bool IsCurrent => CurrentVersion == LatestVersion;
}

/// <summary>
/// An access-token key as stored: its material, in the clear when <see cref="Protection"/> is null, else
/// AES-GCM-encrypted under the master key with that id. A key seals new tokens from <see cref="ActivatesAt"/> on.
/// </summary>
internal sealed record StoredAccessTokenKey(int Id, byte[] Material, string? Protection, DateTimeOffset CreatedAt, DateTimeOffset ActivatesAt);

/// <summary>A security event to record (see <c>Audit.AuditEvents</c> for the names). Never holds a token or secret.</summary>
internal sealed record AuditEvent(
    DateTimeOffset At, string Event, string? ClientId, string? UserId, string? Ip, string? RequestId, string? Detail);

internal sealed record AuditRecord(long Id, AuditEvent Event);

/// <summary>Filters for listing the audit trail; null matches everything. Newest first.</summary>
internal sealed record AuditQuery(DateTimeOffset? Since, string? ClientId, string? Event, int Limit);

/// <summary>
/// <see cref="ITokenStore.DescribeRisksAsync"/>'s findings: one sentence per setting that could lose answered tokens in a
/// crash or power cut (what <c>tollgate db status</c> lists as <c>durability_risks</c>), and a warning when the pool can
/// ask for more connections than the database admits, else null.
/// </summary>
internal sealed record StoreRisks(IReadOnlyList<string> Durability, string? ConnectionBudget)
{
    public static readonly StoreRisks None = new([], null);
}

/// <summary>What <see cref="ITokenStore.PruneAsync"/> may delete: rows that became useless more than <paramref name="Retention"/> before <paramref name="Now"/>.</summary>
internal sealed record PrunePolicy(DateTimeOffset Now, TimeSpan Retention, int BatchSize)
{
    public long CutoffMilliseconds => (Now - Retention).ToUnixTimeMilliseconds();
}

/// <summary>Rows deleted by a prune run (running totals while it runs).</summary>
internal sealed record PruneResult(long Codes, long RefreshTokens, long Grants, int Batches, bool Skipped = false)
{
    public static readonly PruneResult None = new(0, 0, 0, 0);

    public static PruneResult SkippedRun => new(0, 0, 0, 0, Skipped: true);

    public long Total => Codes + RefreshTokens + Grants;

    public PruneResult Add(long codes, long refreshTokens, long grants) =>
        new(Codes + codes, RefreshTokens + refreshTokens, Grants + grants, Batches + 1);
}
