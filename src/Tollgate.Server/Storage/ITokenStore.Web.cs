namespace Tollgate.Server.Storage;

/// <summary>
/// What the web pages need from the store: sessions, consents, the people's and the developers'
/// pages, device code pairs, Data Protection keys, sign-in throttling and token activity.
/// Same rules as the rest of the interface: purpose-built operations, each deciding atomically
/// inside the store, durable on return when they write.
/// </summary>
internal partial interface ITokenStore
{
    // ---- Web sessions (the cookie holds a random id; the store keeps only its SHA-256) ----

    /// <summary>Durable on return.</summary>
    Task CreateWebSessionAsync(byte[] sessionHash, long userRowId, DateTimeOffset now, DateTimeOffset expiresAt, CancellationToken ct);

    /// <summary>The signed-in user of a live session, or null (unknown, expired, or the user is gone).</summary>
    Task<User?> FindWebSessionUserAsync(byte[] sessionHash, DateTimeOffset now, CancellationToken ct);

    /// <summary>Durable on return; deleting an unknown session is not an error.</summary>
    Task DeleteWebSessionAsync(byte[] sessionHash, CancellationToken ct);

    // ---- Developers and profile ownership ----

    Task<bool> IsDeveloperAsync(long userRowId, CancellationToken ct);

    /// <summary>Durable on return. False if no user has this email.</summary>
    Task<bool> SetDeveloperAsync(string email, bool isDeveloper, CancellationToken ct);

    /// <summary>Profiles, newest first; only those owned by <paramref name="ownerUserRowId"/> when given.</summary>
    Task<IReadOnlyList<ProfileSummary>> ListProfilesAsync(long? ownerUserRowId, CancellationToken ct);

    Task<ProfileSummary?> FindProfileSummaryAsync(string clientId, CancellationToken ct);

    /// <summary>Durable on return; bumps the profile generation. False if the profile or the user is unknown.</summary>
    Task<bool> SetProfileOwnerAsync(string clientId, long ownerUserRowId, CancellationToken ct);

    Task<IReadOnlyList<ClientSecretInfo>> ListClientSecretsAsync(string clientId, CancellationToken ct);

    /// <summary>Durable on return; bumps the profile generation. False if the profile is unknown.</summary>
    Task<bool> AddReturnUrlAsync(string clientId, string url, CancellationToken ct);

    /// <summary>Refuses to remove a profile's last return URL. Durable on return; bumps the profile generation.</summary>
    Task<ReturnUrlRemoval> RemoveReturnUrlAsync(string clientId, string url, CancellationToken ct);

    // ---- Consents and the "Your apps" page ----

    /// <summary>The scope the user has consented to for this profile (canonical form), or null.</summary>
    Task<string?> FindConsentAsync(long userRowId, long profileRowId, CancellationToken ct);

    /// <summary>Adds <paramref name="scope"/>'s tokens to the remembered consent, atomically. Durable on return.</summary>
    Task SaveConsentAsync(long userRowId, long profileRowId, IReadOnlyCollection<string> scope, DateTimeOffset now, CancellationToken ct);

    /// <summary>Applications holding live grants (or a remembered consent) for this user.</summary>
    Task<IReadOnlyList<UserApp>> ListUserAppsAsync(long userRowId, CancellationToken ct);

    /// <summary>
    /// Revokes every grant of this user for this application at once (so every refresh and access
    /// token dies), forgets the consent and deletes unredeemed codes and device approvals. Returns the
    /// number of grants revoked. Durable on return.
    /// </summary>
    Task<int> RemoveUserAppAsync(long userRowId, string clientId, DateTimeOffset now, CancellationToken ct);

    // ---- Device code pairs (LWA's codepair, RFC 8628) ----

    /// <summary>Durable on return. False if the user code is taken (the caller draws another).</summary>
    Task<bool> InsertDeviceCodeAsync(NewDeviceCode code, CancellationToken ct);

    /// <summary>A code pair waiting for a person's decision, by its user code; null if unknown, decided or expired.</summary>
    Task<PendingDeviceCode?> FindPendingDeviceCodeAsync(string userCode, DateTimeOffset now, CancellationToken ct);

    /// <summary>Records the person's decision once. False if the code is unknown, expired or already decided.</summary>
    Task<bool> DecideDeviceCodeAsync(string userCode, long userRowId, bool approved, DateTimeOffset now, CancellationToken ct);

    /// <summary>
    /// One poll of the token endpoint, decided atomically: too early (slow_down), pending, denied, expired,
    /// or approved, in which case the grant and its first refresh token are created and the pair is used up.
    /// </summary>
    /// <remarks>When <paramref name="profileRowId"/> is given, a pair of another profile is <see cref="DevicePollOutcome.Unknown"/> and left untouched.</remarks>
    Task<DevicePoll> PollDeviceCodeAsync(
        byte[] deviceCodeHash, string userCode, long? profileRowId, byte[] refreshTokenHash, DateTimeOffset now, CancellationToken ct);

    // ---- ASP.NET Core Data Protection key ring (shared by every node) ----

    Task<IReadOnlyList<string>> ListDataProtectionKeysAsync(CancellationToken ct);

    /// <summary>Durable on return.</summary>
    Task AddDataProtectionKeyAsync(string name, string xml, DateTimeOffset now, CancellationToken ct);

    // ---- Sign-in throttling ----

    /// <summary>Failures recorded for this key in the window that started at or after <paramref name="windowStartsAfter"/>.</summary>
    Task<SignInFailures> GetSignInFailuresAsync(string key, DateTimeOffset windowStartsAfter, CancellationToken ct);

    /// <summary>
    /// Counts one failure, atomically: a window older than <paramref name="window"/> starts afresh at
    /// <paramref name="now"/>. Returns the state after counting. Durable on return.
    /// </summary>
    Task<SignInFailures> RecordSignInFailureAsync(string key, DateTimeOffset now, TimeSpan window, CancellationToken ct);

    Task ClearSignInFailuresAsync(string key, CancellationToken ct);

    // ---- Token activity (issued / refused per profile and hour) ----

    /// <summary>Adds counts, atomically per row; counts for unknown client ids are dropped.</summary>
    Task AddTokenActivityAsync(IReadOnlyList<TokenActivityDelta> deltas, CancellationToken ct);

    /// <summary>Hours in [<paramref name="from"/>, <paramref name="to"/>) that had activity, oldest first.</summary>
    Task<IReadOnlyList<TokenActivityHour>> GetTokenActivityAsync(string clientId, DateTimeOffset from, DateTimeOffset to, CancellationToken ct);
}
