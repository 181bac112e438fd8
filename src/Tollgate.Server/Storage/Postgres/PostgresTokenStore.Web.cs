using Npgsql;

namespace Tollgate.Server.Storage.Postgres;

/// <summary>
/// The web pages' operations (see <c>ITokenStore.Web.cs</c>) on PostgreSQL, with the same guarantees as the
/// SQLite store: each decision is one conditional statement or a row lock, so racing nodes queue on a row
/// and see the winner's result. Retried writes are idempotent, or recognise their own earlier commit.
/// </summary>
internal sealed partial class PostgresTokenStore
{
    private static DateTimeOffset At(long unixMilliseconds) => DateTimeOffset.FromUnixTimeMilliseconds(unixMilliseconds);

    private static async Task<long?> ProfileRowIdAsync(NpgsqlConnection c, NpgsqlTransaction? t, string clientId, CancellationToken ct, bool forUpdate = false) =>
        (long?)await ScalarAsync(c, t, ct, "SELECT id FROM profiles WHERE client_id = @c" + (forUpdate ? " FOR UPDATE" : ""), ("c", clientId));

    private static async Task<List<T>> ListAsync<T>(NpgsqlCommand command, Func<NpgsqlDataReader, T> read, CancellationToken ct)
    {
        await using (command)
        {
            await using var reader = await command.ExecuteReaderAsync(ct);
            var list = new List<T>();
            while (await reader.ReadAsync(ct))
            {
                list.Add(read(reader));
            }
            return list;
        }
    }

    // ---- Web sessions ----

    public Task CreateWebSessionAsync(byte[] sessionHash, long userRowId, DateTimeOffset now, DateTimeOffset expiresAt, CancellationToken ct) =>
        WriteAsync(async (c, t, _) => await ExecuteAsync(c, t, ct, """
            INSERT INTO web_sessions (session_hash, user_id, created_at, expires_at) VALUES (@h, @u, @t, @e) ON CONFLICT DO NOTHING
            """, ("h", sessionHash), ("u", userRowId), ("t", now.ToUnixTimeMilliseconds()), ("e", expiresAt.ToUnixTimeMilliseconds())), ct);

    public Task<User?> FindWebSessionUserAsync(byte[] sessionHash, DateTimeOffset now, CancellationToken ct) => ReadAsync(async c =>
    {
        await using var command = Sql(c, null, """
            SELECT u.id, u.user_id, u.email, u.name, u.password_hash
            FROM web_sessions w JOIN users u ON u.id = w.user_id
            WHERE w.session_hash = @h AND w.expires_at > @t
            """, ("h", sessionHash), ("t", now.ToUnixTimeMilliseconds()));
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct)
            ? new User(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4))
            : null;
    }, ct);

    public Task DeleteWebSessionAsync(byte[] sessionHash, CancellationToken ct) =>
        WriteAsync(async (c, t, _) => await ExecuteAsync(c, t, ct, "DELETE FROM web_sessions WHERE session_hash = @h", ("h", sessionHash)), ct);

    // ---- Developers and ownership ----

    public Task<bool> IsDeveloperAsync(long userRowId, CancellationToken ct) => ReadAsync(async c =>
        await ScalarAsync(c, null, ct, "SELECT 1 FROM developers WHERE user_id = @u", ("u", userRowId)) is not null, ct);

    public Task<bool> SetDeveloperAsync(string email, bool isDeveloper, CancellationToken ct) => WriteAsync(async (c, t, _) =>
    {
        if (await ScalarAsync(c, t, ct, "SELECT id FROM users WHERE lower(email) = lower(@e)", ("e", email)) is not long userRowId)
        {
            return false;
        }
        await ExecuteAsync(c, t, ct, isDeveloper
            ? "INSERT INTO developers (user_id) VALUES (@u) ON CONFLICT DO NOTHING"
            : "DELETE FROM developers WHERE user_id = @u", ("u", userRowId));
        return true;
    }, ct);

    private const string ProfileSummarySelect = """
        SELECT p.id, p.client_id, p.app_id, p.name, p.is_public, p.refresh_policy, o.user_id, p.created_at,
               (SELECT count(*) FROM grants g WHERE g.profile_id = p.id AND g.revoked_at IS NULL)
        FROM profiles p LEFT JOIN profile_owners o ON o.profile_id = p.id
        """;

    private static ProfileSummary ReadProfileSummary(NpgsqlDataReader reader) => new(
        reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetBoolean(4),
        RefreshPolicyNames.Parse(reader.GetString(5)) ?? RefreshPolicy.Reuse,
        reader.IsDBNull(6) ? null : reader.GetInt64(6), At(reader.GetInt64(7)), (int)reader.GetInt64(8));

    public Task<IReadOnlyList<ProfileSummary>> ListProfilesAsync(long? ownerUserRowId, CancellationToken ct) => ReadAsync(async c =>
        (IReadOnlyList<ProfileSummary>)await ListAsync(Sql(c, null,
            ProfileSummarySelect + " WHERE @o::bigint IS NULL OR o.user_id = @o::bigint ORDER BY p.created_at DESC, p.id DESC",
            ("o", ownerUserRowId)), ReadProfileSummary, ct), ct);

    public Task<ProfileSummary?> FindProfileSummaryAsync(string clientId, CancellationToken ct) => ReadAsync(async c =>
        (await ListAsync(Sql(c, null, ProfileSummarySelect + " WHERE p.client_id = @c", ("c", clientId)), ReadProfileSummary, ct)).FirstOrDefault(), ct);

    public Task<bool> SetProfileOwnerAsync(string clientId, long ownerUserRowId, CancellationToken ct) => WriteAsync(async (c, t, _) =>
    {
        if (await ProfileRowIdAsync(c, t, clientId, ct) is not { } profileRowId
            || await ScalarAsync(c, t, ct, "SELECT 1 FROM users WHERE id = @u", ("u", ownerUserRowId)) is null)
        {
            return false;
        }
        await ExecuteAsync(c, t, ct, """
            INSERT INTO profile_owners (profile_id, user_id) VALUES (@p, @u)
            ON CONFLICT (profile_id) DO UPDATE SET user_id = excluded.user_id
            """, ("p", profileRowId), ("u", ownerUserRowId));
        await BumpProfileGenerationAsync(c, t, ct);
        return true;
    }, ct);

    public Task<IReadOnlyList<ClientSecretInfo>> ListClientSecretsAsync(string clientId, CancellationToken ct) => ReadAsync(async c =>
        (IReadOnlyList<ClientSecretInfo>)await ListAsync(Sql(c, null, """
            SELECT s.id, s.created_at, s.expires_at FROM client_secrets s JOIN profiles p ON p.id = s.profile_id
            WHERE p.client_id = @c ORDER BY s.id DESC
            """, ("c", clientId)),
            r => new ClientSecretInfo(r.GetInt64(0), At(r.GetInt64(1)), r.IsDBNull(2) ? null : At(r.GetInt64(2))), ct), ct);

    public Task<bool> AddReturnUrlAsync(string clientId, string url, CancellationToken ct) => WriteAsync(async (c, t, _) =>
    {
        if (await ProfileRowIdAsync(c, t, clientId, ct) is not { } profileRowId)
        {
            return false;
        }
        await ExecuteAsync(c, t, ct, "INSERT INTO profile_return_urls (profile_id, url) VALUES (@p, @u) ON CONFLICT DO NOTHING",
            ("p", profileRowId), ("u", url));
        await BumpProfileGenerationAsync(c, t, ct);
        return true;
    }, ct);

    public Task<ReturnUrlRemoval> RemoveReturnUrlAsync(string clientId, string url, CancellationToken ct) => WriteAsync(async (c, t, _) =>
    {
        // The profile row lock makes "not the last one" hold against a racing removal of the other URL.
        if (await ProfileRowIdAsync(c, t, clientId, ct, forUpdate: true) is not { } profileRowId
            || await ScalarAsync(c, t, ct, "SELECT 1 FROM profile_return_urls WHERE profile_id = @p AND url = @u", ("p", profileRowId), ("u", url)) is null)
        {
            return ReturnUrlRemoval.NotFound;
        }
        if ((long)(await ScalarAsync(c, t, ct, "SELECT count(*) FROM profile_return_urls WHERE profile_id = @p", ("p", profileRowId)))! <= 1)
        {
            return ReturnUrlRemoval.LastOne;
        }
        await ExecuteAsync(c, t, ct, "DELETE FROM profile_return_urls WHERE profile_id = @p AND url = @u", ("p", profileRowId), ("u", url));
        await BumpProfileGenerationAsync(c, t, ct);
        return ReturnUrlRemoval.Removed;
    }, ct);

    // ---- Consents and "Your apps" ----

    public Task<string?> FindConsentAsync(long userRowId, long profileRowId, CancellationToken ct) => ReadAsync(async c =>
        (string?)await ScalarAsync(c, null, ct, "SELECT scope FROM consents WHERE user_id = @u AND profile_id = @p",
            ("u", userRowId), ("p", profileRowId)), ct);

    public Task SaveConsentAsync(long userRowId, long profileRowId, IReadOnlyCollection<string> scope, DateTimeOffset now, CancellationToken ct)
    {
        string canonical = string.Join(' ', new SortedSet<string>(scope, StringComparer.Ordinal));
        // One statement: the union with what was consented before is computed under the row's lock, so two
        // consents racing for different scopes both end up in the row. Sorted bytewise, like Scope.Value.
        return WriteAsync(async (c, t, _) => await ExecuteAsync(c, t, ct, """
            INSERT INTO consents (user_id, profile_id, scope, granted_at) VALUES (@u, @p, @s, @t)
            ON CONFLICT (user_id, profile_id) DO UPDATE SET scope = (
                SELECT string_agg(token, ' ' ORDER BY token COLLATE "C")
                FROM (SELECT DISTINCT token FROM unnest(string_to_array(consents.scope || ' ' || excluded.scope, ' ')) AS u (token)
                      WHERE token <> '') tokens)
            """, ("u", userRowId), ("p", profileRowId), ("s", canonical), ("t", now.ToUnixTimeMilliseconds())), ct);
    }

    public Task<IReadOnlyList<UserApp>> ListUserAppsAsync(long userRowId, CancellationToken ct) => ReadAsync(async c =>
        (IReadOnlyList<UserApp>)await ListAsync(Sql(c, null, """
            SELECT p.client_id, p.name,
                   (SELECT string_agg(g.scope, ' ') FROM grants g WHERE g.user_id = @u AND g.profile_id = p.id AND g.revoked_at IS NULL),
                   (SELECT c.scope FROM consents c WHERE c.user_id = @u AND c.profile_id = p.id),
                   (SELECT min(g.created_at) FROM grants g WHERE g.user_id = @u AND g.profile_id = p.id AND g.revoked_at IS NULL),
                   (SELECT c.granted_at FROM consents c WHERE c.user_id = @u AND c.profile_id = p.id),
                   (SELECT count(*) FROM grants g WHERE g.user_id = @u AND g.profile_id = p.id AND g.revoked_at IS NULL)
            FROM profiles p
            WHERE p.id IN (SELECT profile_id FROM grants WHERE user_id = @u AND revoked_at IS NULL
                           UNION SELECT profile_id FROM consents WHERE user_id = @u)
            ORDER BY p.name, p.id
            """, ("u", userRowId)), r =>
        {
            var scope = new SortedSet<string>(StringComparer.Ordinal);
            foreach (int column in (int[])[2, 3])
            {
                if (!r.IsDBNull(column))
                {
                    scope.UnionWith(r.GetString(column).Split(' ', StringSplitOptions.RemoveEmptyEntries));
                }
            }
            long since = ((int[])[4, 5]).Where(col => !r.IsDBNull(col)).Select(r.GetInt64).Min();
            return new UserApp(r.GetString(0), r.GetString(1), string.Join(' ', scope), At(since), (int)r.GetInt64(6));
        }, ct), ct);

    public Task<int> RemoveUserAppAsync(long userRowId, string clientId, DateTimeOffset now, CancellationToken ct) => WriteAsync(async (c, t, _) =>
    {
        if (await ProfileRowIdAsync(c, t, clientId, ct) is not { } profileRowId)
        {
            return 0;
        }
        long at = now.ToUnixTimeMilliseconds();
        // One transaction: every grant dies together, and nothing in flight can bring the application back.
        int revoked = await ExecuteAsync(c, t, ct, """
            UPDATE grants SET revoked_at = @t, revoked_reason = 'removed by the user'
            WHERE user_id = @u AND profile_id = @p AND revoked_at IS NULL
            """, ("t", at), ("u", userRowId), ("p", profileRowId));
        await ExecuteAsync(c, t, ct, "DELETE FROM consents WHERE user_id = @u AND profile_id = @p", ("u", userRowId), ("p", profileRowId));
        await ExecuteAsync(c, t, ct, "DELETE FROM authorization_codes WHERE user_id = @u AND profile_id = @p AND redeemed_at IS NULL",
            ("u", userRowId), ("p", profileRowId));
        await ExecuteAsync(c, t, ct, "UPDATE device_codes SET approved = false WHERE user_id = @u AND profile_id = @p AND redeemed_at IS NULL",
            ("u", userRowId), ("p", profileRowId));
        return revoked;
    }, ct);

    // ---- Device code pairs ----

    public Task<bool> InsertDeviceCodeAsync(NewDeviceCode code, CancellationToken ct) => WriteAsync(async (c, t, attempt) =>
    {
        int inserted = await ExecuteAsync(c, t, ct, """
            INSERT INTO device_codes (device_code_hash, user_code, profile_id, scope, interval_ms, created_at, expires_at)
            VALUES (@h, @u, @p, @s, @i, @t, @e) ON CONFLICT DO NOTHING
            """, ("h", code.DeviceCodeHash), ("u", code.UserCode), ("p", code.ProfileRowId), ("s", code.Scope),
            ("i", (long)code.Interval.TotalMilliseconds), ("t", code.CreatedAt.ToUnixTimeMilliseconds()), ("e", code.ExpiresAt.ToUnixTimeMilliseconds()));
        // A retry whose first attempt committed finds its own row: the user code is taken, but by this very pair.
        return inserted == 1 || (attempt > 1 && await ScalarAsync(c, t, ct,
            "SELECT 1 FROM device_codes WHERE device_code_hash = @h AND user_code = @u", ("h", code.DeviceCodeHash), ("u", code.UserCode)) is not null);
    }, ct);

    public Task<PendingDeviceCode?> FindPendingDeviceCodeAsync(string userCode, DateTimeOffset now, CancellationToken ct) => ReadAsync(async c =>
        (await ListAsync(Sql(c, null, """
            SELECT d.profile_id, p.client_id, d.scope, d.expires_at
            FROM device_codes d JOIN profiles p ON p.id = d.profile_id
            WHERE d.user_code = @u AND d.decided_at IS NULL AND d.expires_at > @t
            """, ("u", userCode), ("t", now.ToUnixTimeMilliseconds())),
            r => new PendingDeviceCode(r.GetInt64(0), r.GetString(1), r.GetString(2), At(r.GetInt64(3))), ct)).FirstOrDefault(), ct);

    public Task<bool> DecideDeviceCodeAsync(string userCode, long userRowId, bool approved, DateTimeOffset now, CancellationToken ct) =>
        WriteAsync(async (c, t, attempt) =>
        {
            int decided = await ExecuteAsync(c, t, ct, """
                UPDATE device_codes SET user_id = @user, decided_at = @t, approved = @a
                WHERE user_code = @u AND decided_at IS NULL AND expires_at > @t
                """, ("user", userRowId), ("t", now.ToUnixTimeMilliseconds()), ("a", approved), ("u", userCode));
            return decided == 1 || (attempt > 1 && await ScalarAsync(c, t, ct,
                "SELECT 1 FROM device_codes WHERE user_code = @u AND user_id = @user AND decided_at = @t",
                ("u", userCode), ("user", userRowId), ("t", now.ToUnixTimeMilliseconds())) is not null);
        }, ct);

    public Task<DevicePoll> PollDeviceCodeAsync(
        byte[] deviceCodeHash, string userCode, long? profileRowId, byte[] refreshTokenHash, DateTimeOffset now, CancellationToken ct) =>
        WriteAsync(async (c, t, attempt) =>
        {
            long at = now.ToUnixTimeMilliseconds();
            // FOR UPDATE: two polls of one pair take turns, so only one of them can redeem it.
            await using var select = Sql(c, t, """
                SELECT d.user_code, d.profile_id, d.scope, d.interval_ms, d.expires_at, d.last_polled_at, d.user_id,
                       d.decided_at IS NOT NULL, coalesce(d.approved, false), d.redeemed_at IS NOT NULL, d.grant_id
                FROM device_codes d WHERE d.device_code_hash = @h FOR UPDATE
                """, ("h", deviceCodeHash));
            string storedUserCode, scope;
            long pairProfileRowId, intervalMs, expiresAt;
            long? lastPolled, userRowId, grantId;
            bool decided, approved, redeemed;
            await using (var reader = await select.ExecuteReaderAsync(ct))
            {
                if (!await reader.ReadAsync(ct))
                {
                    return new DevicePoll(DevicePollOutcome.Unknown);
                }
                storedUserCode = reader.GetString(0);
                pairProfileRowId = reader.GetInt64(1);
                scope = reader.GetString(2);
                intervalMs = reader.GetInt64(3);
                expiresAt = reader.GetInt64(4);
                lastPolled = reader.IsDBNull(5) ? null : reader.GetInt64(5);
                userRowId = reader.IsDBNull(6) ? null : reader.GetInt64(6);
                decided = reader.GetBoolean(7);
                approved = reader.GetBoolean(8);
                redeemed = reader.GetBoolean(9);
                grantId = reader.IsDBNull(10) ? null : reader.GetInt64(10);
            }
            if (storedUserCode != userCode || (profileRowId is not null && pairProfileRowId != profileRowId))
            {
                return new DevicePoll(DevicePollOutcome.Unknown);
            }
            if (redeemed)
            {
                // A retry whose first attempt committed recognises the refresh token it stored itself.
                bool ours = attempt > 1 && await ScalarAsync(c, t, ct, "SELECT 1 FROM refresh_tokens WHERE token_hash = @h AND grant_id = @g",
                    ("h", refreshTokenHash), ("g", grantId)) is not null;
                return ours ? await ApprovedAsync(c, t, grantId!.Value, pairProfileRowId, userRowId!.Value, scope, ct) : new DevicePoll(DevicePollOutcome.Unknown);
            }
            if (at >= expiresAt)
            {
                return new DevicePoll(DevicePollOutcome.Expired);
            }
            bool tooSoon = lastPolled is not null && at - lastPolled.Value < intervalMs;
            await ExecuteAsync(c, t, ct, "UPDATE device_codes SET last_polled_at = @t WHERE device_code_hash = @h", ("t", at), ("h", deviceCodeHash));
            if (tooSoon)
            {
                return new DevicePoll(DevicePollOutcome.SlowDown);
            }
            if (!decided)
            {
                return new DevicePoll(DevicePollOutcome.Pending);
            }
            if (!approved)
            {
                return new DevicePoll(DevicePollOutcome.Denied);
            }
            long newGrant = (long)(await ScalarAsync(c, t, ct,
                "INSERT INTO grants (profile_id, user_id, scope, created_at) VALUES (@p, @u, @s, @t) RETURNING id",
                ("p", pairProfileRowId), ("u", userRowId), ("s", scope), ("t", at)))!;
            await InsertRefreshTokenAsync(c, t, refreshTokenHash, newGrant, at, ct);
            await ExecuteAsync(c, t, ct, "UPDATE device_codes SET redeemed_at = @t, grant_id = @g WHERE device_code_hash = @h",
                ("t", at), ("g", newGrant), ("h", deviceCodeHash));
            return await ApprovedAsync(c, t, newGrant, pairProfileRowId, userRowId!.Value, scope, ct);
        }, ct);

    private static async Task<DevicePoll> ApprovedAsync(
        NpgsqlConnection c, NpgsqlTransaction t, long grantId, long profileRowId, long userRowId, string scope, CancellationToken ct)
    {
        string clientId = (string)(await ScalarAsync(c, t, ct, "SELECT client_id FROM profiles WHERE id = @p", ("p", profileRowId)))!;
        string userId = (string)(await ScalarAsync(c, t, ct, "SELECT user_id FROM users WHERE id = @u", ("u", userRowId)))!;
        return new DevicePoll(DevicePollOutcome.Approved, grantId, clientId, userId, scope);
    }

    // ---- Data Protection keys ----

    public Task<IReadOnlyList<string>> ListDataProtectionKeysAsync(CancellationToken ct) => ReadAsync(async c =>
        (IReadOnlyList<string>)await ListAsync(Sql(c, null, "SELECT xml FROM data_protection_keys ORDER BY id"), r => r.GetString(0), ct), ct);

    public Task AddDataProtectionKeyAsync(string name, string xml, DateTimeOffset now, CancellationToken ct) =>
        WriteAsync(async (c, t, attempt) =>
            // A retry must not store the same key twice: the XML carries the key's own id.
            attempt > 1 && await ScalarAsync(c, t, ct, "SELECT 1 FROM data_protection_keys WHERE xml = @x", ("x", xml)) is not null
                ? 0
                : await ExecuteAsync(c, t, ct, "INSERT INTO data_protection_keys (name, xml, created_at) VALUES (@n, @x, @t)",
                    ("n", name), ("x", xml), ("t", now.ToUnixTimeMilliseconds())), ct);

    // ---- Sign-in throttling ----

    public Task<SignInFailures> GetSignInFailuresAsync(string key, DateTimeOffset windowStartsAfter, CancellationToken ct) => ReadAsync(async c =>
        (await ListAsync(Sql(c, null, "SELECT failures, window_start FROM sign_in_failures WHERE throttle_key = @k AND window_start >= @w",
            ("k", key), ("w", windowStartsAfter.ToUnixTimeMilliseconds())),
            r => new SignInFailures(r.GetInt32(0), At(r.GetInt64(1))), ct)).FirstOrDefault(), ct);

    public Task<SignInFailures> RecordSignInFailureAsync(string key, DateTimeOffset now, TimeSpan window, CancellationToken ct) =>
        WriteAsync(async (c, t, _) =>
        {
            long at = now.ToUnixTimeMilliseconds();
            // One upsert: counted atomically under the row's lock however many nodes see failures at once.
            var rows = await ListAsync(Sql(c, t, """
                INSERT INTO sign_in_failures (throttle_key, window_start, failures) VALUES (@k, @t, 1)
                ON CONFLICT (throttle_key) DO UPDATE SET
                    failures = CASE WHEN sign_in_failures.window_start >= @w THEN sign_in_failures.failures + 1 ELSE 1 END,
                    window_start = CASE WHEN sign_in_failures.window_start >= @w THEN sign_in_failures.window_start ELSE @t END
                RETURNING failures, window_start
                """, ("k", key), ("t", at), ("w", at - (long)window.TotalMilliseconds)),
                r => new SignInFailures(r.GetInt32(0), At(r.GetInt64(1))), ct);
            return rows[0];
        }, ct);

    public Task ClearSignInFailuresAsync(string key, CancellationToken ct) =>
        WriteAsync(async (c, t, _) => await ExecuteAsync(c, t, ct, "DELETE FROM sign_in_failures WHERE throttle_key = @k", ("k", key)), ct);

    // ---- Token activity ----

    public Task AddTokenActivityAsync(IReadOnlyList<TokenActivityDelta> deltas, CancellationToken ct) => WriteAsync(async (c, t, _) =>
    {
        foreach (var delta in deltas)
        {
            await ExecuteAsync(c, t, ct, """
                INSERT INTO token_activity (profile_id, hour, issued, refused)
                SELECT id, @h, @i, @r FROM profiles WHERE client_id = @c
                ON CONFLICT (profile_id, hour) DO UPDATE SET
                    issued = token_activity.issued + excluded.issued, refused = token_activity.refused + excluded.refused
                """, ("h", delta.Hour.ToUnixTimeMilliseconds()), ("i", (long)delta.Issued), ("r", (long)delta.Refused), ("c", delta.ClientId));
        }
        return deltas.Count;
    }, ct);

    public Task<IReadOnlyList<TokenActivityHour>> GetTokenActivityAsync(string clientId, DateTimeOffset from, DateTimeOffset to, CancellationToken ct) =>
        ReadAsync(async c => (IReadOnlyList<TokenActivityHour>)await ListAsync(Sql(c, null, """
            SELECT a.hour, a.issued, a.refused FROM token_activity a JOIN profiles p ON p.id = a.profile_id
            WHERE p.client_id = @c AND a.hour >= @f AND a.hour < @t ORDER BY a.hour
            """, ("c", clientId), ("f", from.ToUnixTimeMilliseconds()), ("t", to.ToUnixTimeMilliseconds())),
            r => new TokenActivityHour(At(r.GetInt64(0)), r.GetInt64(1), r.GetInt64(2)), ct), ct);
}
