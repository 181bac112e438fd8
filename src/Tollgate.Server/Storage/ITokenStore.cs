namespace Tollgate.Server.Storage;

/// <summary>
/// Everything the endpoints and the admin commands need from a database, as purpose-built
/// operations rather than a generic repository. Each method that decides something under
/// concurrency (redeem a code once, rotate a refresh token once) does so atomically inside the
/// store, so the guarantee holds across threads, processes and nodes whatever the backend.
/// </summary>
/// <remarks>
/// Secrets cross this boundary only as SHA-256 hashes (see <c>Crypto.Secrets</c>). Methods that
/// return once a write is durable say so; a caller may answer a client only after they return.
/// </remarks>
internal partial interface ITokenStore : IAsyncDisposable
{
    /// <summary>Brings the schema to the current version (idempotent, safe to race).</summary>
    Task<SchemaStatus> MigrateAsync(CancellationToken ct);

    Task<SchemaStatus> GetSchemaStatusAsync(CancellationToken ct);

    /// <summary>
    /// What an operator should hear about the database under this store before it holds anyone's tokens: settings
    /// under which an answered token could be lost, and a pool bigger than the database admits. Advice only: a
    /// database that cannot be asked gives none, and its errors surface on real requests.
    /// </summary>
    Task<StoreRisks> DescribeRisksAsync(CancellationToken ct);

    // ---- Security profiles (clients) ----

    Task<Profile?> FindProfileAsync(string clientId, CancellationToken ct);

    /// <summary>
    /// A number that changes whenever any profile changes or any grant is revoked; caches of profiles and of
    /// grant status compare it to know when to drop entries.
    /// </summary>
    Task<long> GetProfileGenerationAsync(CancellationToken ct);

    /// <summary>Durable on return. False if the client id is taken.</summary>
    Task<bool> CreateProfileAsync(NewProfile profile, CancellationToken ct);

    /// <summary>Deletes the profile and, with it, every grant, code and refresh token it had. False if unknown.</summary>
    Task<bool> DeleteProfileAsync(string clientId, CancellationToken ct);

    /// <summary>
    /// Sets the profile's token-request rate limit (per minute; null: the server default; 0: unlimited).
    /// Durable on return; bumps the profile generation so every node picks it up. False if unknown.
    /// </summary>
    Task<bool> SetProfileRateLimitAsync(string clientId, int? perMinute, CancellationToken ct);

    /// <summary>
    /// Adds <paramref name="newSecretHash"/> as a client secret and makes every older secret stop working at
    /// <paramref name="oldSecretsExpireAt"/> (Amazon's overlap: the old secret keeps working for 7 days). Refresh
    /// tokens are unaffected. Durable on return; bumps the profile generation. False if the profile is unknown or public.
    /// </summary>
    Task<bool> RotateClientSecretAsync(string clientId, byte[] newSecretHash, DateTimeOffset now, DateTimeOffset oldSecretsExpireAt, CancellationToken ct);

    /// <summary>
    /// Completes when a profile may have changed (another process or node wrote one), or after
    /// <paramref name="maxWait"/> at the latest. Stores without change notifications just wait.
    /// </summary>
    Task WaitForProfileChangeAsync(TimeSpan maxWait, CancellationToken ct);

    // ---- Users ----

    /// <summary>Durable on return. False if the email is taken.</summary>
    Task<bool> CreateUserAsync(NewUser user, CancellationToken ct);

    Task<User?> FindUserByEmailAsync(string email, CancellationToken ct);

    Task<User?> FindUserByUserIdAsync(string userId, CancellationToken ct);

    // ---- Authorization codes ----

    /// <summary>Durable on return.</summary>
    Task InsertCodeAsync(NewCode code, CancellationToken ct);

    /// <summary>
    /// Reads the code and, if it was issued to <paramref name="profileRowId"/>, has not been redeemed and meets
    /// <paramref name="terms"/> (expiry at <see cref="RedemptionTerms.Now"/>, redirect URI, PKCE), marks it redeemed at
    /// that time and creates its grant and first refresh token, all or nothing, durable on return. A code of another
    /// client is <see cref="CodeRedemptionOutcome.Unknown"/> and changes nothing. A code already redeemed is not redeemed
    /// again: its grant is revoked instead (RFC 6749 §4.1.2), whatever the terms would say. The result carries the code as
    /// read, so the caller needs no read of its own, and on <see cref="CodeRedemptionOutcome.Refused"/> can ask
    /// <see cref="RedemptionTerms.Check"/> which term it failed.
    /// </summary>
    Task<CodeRedemption> RedeemCodeAsync(
        byte[] codeHash, byte[] refreshTokenHash, long profileRowId, RedemptionTerms terms, CancellationToken ct);

    // ---- Refresh tokens and grants ----

    Task<RefreshToken?> FindRefreshTokenAsync(byte[] tokenHash, CancellationToken ct);

    /// <summary>
    /// For the <c>rotate</c> policy: reads the presented token and, if it was issued to <paramref name="profileRowId"/>,
    /// consumes it and stores its successor, atomically, durable on return. A token of another client is
    /// <see cref="RotationOutcome.Unknown"/> and changes nothing. A token consumed less than
    /// <paramref name="graceWindow"/> ago still yields a successor; one consumed earlier revokes its whole grant
    /// (RFC 9700 §4.14). The result carries the token as it was read (null when unknown), so the caller needs no
    /// read of its own.
    /// </summary>
    Task<Rotation> RotateRefreshTokenAsync(
        byte[] presentedHash, byte[] successorHash, long profileRowId, DateTimeOffset now, TimeSpan graceWindow, CancellationToken ct);

    /// <summary>True while the grant exists and is not revoked; access tokens die with their grant.</summary>
    Task<bool> IsGrantActiveAsync(long grantId, CancellationToken ct);

    // ---- Housekeeping ----

    /// <summary>
    /// Deletes, in batches of <see cref="PrunePolicy.BatchSize"/> rows per table and transaction, codes that expired,
    /// refresh tokens that were consumed, and grants that were revoked, each longer than <see cref="PrunePolicy.Retention"/>
    /// ago. Only one process prunes at a time: if another holds the job, returns at once with <see cref="PruneResult.Skipped"/>.
    /// <paramref name="progress"/> hears the running totals after every batch.
    /// </summary>
    Task<PruneResult> PruneAsync(PrunePolicy policy, Action<PruneResult>? progress, CancellationToken ct);

    // ---- Keys ----

    /// <summary>
    /// The AES-256 keys that seal access tokens, shared by every node. When there are none yet,
    /// <paramref name="candidateKey"/> becomes the first (whoever commits first wins a start-up race).
    /// </summary>
    /// <remarks>Returns material as stored; the server now uses <see cref="ListAccessTokenKeysAsync"/> through <c>Crypto.KeyRing</c>.</remarks>
    Task<AccessTokenKeys> GetOrCreateAccessTokenKeysAsync(byte[] candidateKey, DateTimeOffset now, CancellationToken ct);

    /// <summary>Every access-token key, oldest first, material as stored (possibly encrypted).</summary>
    Task<IReadOnlyList<StoredAccessTokenKey>> ListAccessTokenKeysAsync(CancellationToken ct);

    /// <summary>
    /// Adds a key (its <see cref="StoredAccessTokenKey.Id"/> is ignored) unless some key was created after
    /// <paramref name="unlessCreatedAfter"/>: so nodes that find rotation due at the same moment add one key, not several.
    /// Durable on return. True if added.
    /// </summary>
    Task<bool> AddAccessTokenKeyAsync(StoredAccessTokenKey key, DateTimeOffset unlessCreatedAfter, CancellationToken ct);

    /// <summary>
    /// Replaces a key's stored material (re-encryption under another master key) if its protection is still
    /// <paramref name="expectedProtection"/>. Durable on return. True if replaced.
    /// </summary>
    Task<bool> ReplaceAccessTokenKeyMaterialAsync(int id, byte[] material, string? protection, string? expectedProtection, CancellationToken ct);

    /// <summary>Deletes retired keys. Durable on return.</summary>
    Task<int> DeleteAccessTokenKeysAsync(IReadOnlyList<int> ids, CancellationToken ct);

    // ---- Audit trail ----

    /// <summary>Appends security events in one write (it joins the group commit, so it costs no fsync of its own).</summary>
    Task AppendAuditEventsAsync(IReadOnlyList<AuditEvent> events, CancellationToken ct);

    Task<IReadOnlyList<AuditRecord>> ListAuditEventsAsync(AuditQuery query, CancellationToken ct);
}
