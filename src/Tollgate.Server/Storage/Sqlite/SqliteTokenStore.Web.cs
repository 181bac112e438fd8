using Microsoft.Data.Sqlite;

namespace Tollgate.Server.Storage.Sqlite;

/// <summary>The web pages' operations (see <c>ITokenStore.Web.cs</c>); writes go through the group commit like every other.</summary>
internal sealed partial class SqliteTokenStore
{
    private static DateTimeOffset At(long unixMilliseconds) => DateTimeOffset.FromUnixTimeMilliseconds(unixMilliseconds);

    private static DateTimeOffset? AtOrNull(SqliteDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? null : At(reader.GetInt64(ordinal));

    private static long? ProfileRowId(SqliteSession s, string clientId) =>
        (long?)s.Command("SELECT id FROM profiles WHERE client_id = $c").With("$c", clientId).ExecuteScalar();

    // ---- Web sessions ----

    public Task CreateWebSessionAsync(byte[] sessionHash, long userRowId, DateTimeOffset now, DateTimeOffset expiresAt, CancellationToken ct) =>
        _writer.WriteAsync(s => s.Command("""
            INSERT INTO web_sessions (session_hash, user_id, created_at, expires_at) VALUES ($h, $u, $t, $e)
            """).With("$h", sessionHash).With("$u", userRowId).With("$t", now.ToUnixTimeMilliseconds())
            .With("$e", expiresAt.ToUnixTimeMilliseconds()).ExecuteNonQuery());

    public Task<User?> FindWebSessionUserAsync(byte[] sessionHash, DateTimeOffset now, CancellationToken ct) => Task.FromResult(_readers.Read(s =>
    {
        using var reader = s.Command("""
            SELECT u.id, u.user_id, u.email, u.name, u.password_hash
            FROM web_sessions w JOIN users u ON u.id = w.user_id
            WHERE w.session_hash = $h AND w.expires_at > $t
            """).With("$h", sessionHash).With("$t", now.ToUnixTimeMilliseconds()).ExecuteReader();
        return reader.Read()
            ? new User(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4))
            : null;
    }));

    public Task DeleteWebSessionAsync(byte[] sessionHash, CancellationToken ct) =>
        _writer.WriteAsync(s => s.Command("DELETE FROM web_sessions WHERE session_hash = $h").With("$h", sessionHash).ExecuteNonQuery());

    // ---- Developers and ownership ----

    public Task<bool> IsDeveloperAsync(long userRowId, CancellationToken ct) => Task.FromResult(_readers.Read(s =>
        s.Command("SELECT 1 FROM developers WHERE user_id = $u").With("$u", userRowId).ExecuteScalar() is not null));

    public Task<bool> SetDeveloperAsync(string email, bool isDeveloper, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        if (s.Command("SELECT id FROM users WHERE email = $e").With("$e", email).ExecuteScalar() is not long userRowId)
        {
            return false;
        }
        s.Command(isDeveloper
                ? "INSERT INTO developers (user_id) VALUES ($u) ON CONFLICT DO NOTHING"
                : "DELETE FROM developers WHERE user_id = $u")
            .With("$u", userRowId).ExecuteNonQuery();
        return true;
    });

    private const string ProfileSummarySelect = """
        SELECT p.id, p.client_id, p.app_id, p.name, p.is_public, p.refresh_policy, o.user_id, p.created_at,
               (SELECT count(*) FROM grants g WHERE g.profile_id = p.id AND g.revoked_at IS NULL)
        FROM profiles p LEFT JOIN profile_owners o ON o.profile_id = p.id
        """;

    private static ProfileSummary ReadProfileSummary(SqliteDataReader reader) => new(
        reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetInt64(4) != 0,
        RefreshPolicyNames.Parse(reader.GetString(5)) ?? RefreshPolicy.Reuse,
        reader.IsDBNull(6) ? null : reader.GetInt64(6), At(reader.GetInt64(7)), reader.GetInt32(8));

    public Task<IReadOnlyList<ProfileSummary>> ListProfilesAsync(long? ownerUserRowId, CancellationToken ct) =>
        Task.FromResult<IReadOnlyList<ProfileSummary>>(_readers.Read(s =>
        {
            using var reader = s.Command(ProfileSummarySelect + " WHERE $o IS NULL OR o.user_id = $o ORDER BY p.created_at DESC, p.id DESC")
                .With("$o", ownerUserRowId).ExecuteReader();
            var list = new List<ProfileSummary>();
            while (reader.Read())
            {
                list.Add(ReadProfileSummary(reader));
            }
            return list;
        }));

    public Task<ProfileSummary?> FindProfileSummaryAsync(string clientId, CancellationToken ct) => Task.FromResult(_readers.Read(s =>
    {
        using var reader = s.Command(ProfileSummarySelect + " WHERE p.client_id = $c").With("$c", clientId).ExecuteReader();
        return reader.Read() ? ReadProfileSummary(reader) : null;
    }));

    public Task<bool> SetProfileOwnerAsync(string clientId, long ownerUserRowId, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        if (ProfileRowId(s, clientId) is not { } profileRowId
            || s.Command("SELECT 1 FROM users WHERE id = $u").With("$u", ownerUserRowId).ExecuteScalar() is null)
        {
            return false;
        }
        s.Command("""
            INSERT INTO profile_owners (profile_id, user_id) VALUES ($p, $u)
            ON CONFLICT (profile_id) DO UPDATE SET user_id = excluded.user_id
            """).With("$p", profileRowId).With("$u", ownerUserRowId).ExecuteNonQuery();
        BumpProfileGeneration(s);
        return true;
    });

    public Task<IReadOnlyList<ClientSecretInfo>> ListClientSecretsAsync(string clientId, CancellationToken ct) =>
        Task.FromResult<IReadOnlyList<ClientSecretInfo>>(_readers.Read(s =>
        {
            using var reader = s.Command("""
                SELECT s.id, s.created_at, s.expires_at FROM client_secrets s JOIN profiles p ON p.id = s.profile_id
                WHERE p.client_id = $c ORDER BY s.id DESC
                """).With("$c", clientId).ExecuteReader();
            var list = new List<ClientSecretInfo>();
            while (reader.Read())
            {
                list.Add(new ClientSecretInfo(reader.GetInt64(0), At(reader.GetInt64(1)), AtOrNull(reader, 2)));
            }
            return list;
        }));

    public Task<bool> AddReturnUrlAsync(string clientId, string url, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        if (ProfileRowId(s, clientId) is not { } profileRowId)
        {
            return false;
        }
        s.Command("INSERT INTO profile_return_urls (profile_id, url) VALUES ($p, $u) ON CONFLICT DO NOTHING")
            .With("$p", profileRowId).With("$u", url).ExecuteNonQuery();
        BumpProfileGeneration(s);
        return true;
    });

    public Task<ReturnUrlRemoval> RemoveReturnUrlAsync(string clientId, string url, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        if (ProfileRowId(s, clientId) is not { } profileRowId
            || s.Command("SELECT 1 FROM profile_return_urls WHERE profile_id = $p AND url = $u")
                .With("$p", profileRowId).With("$u", url).ExecuteScalar() is null)
        {
            return ReturnUrlRemoval.NotFound;
        }
        if ((long)s.Command("SELECT count(*) FROM profile_return_urls WHERE profile_id = $p").With("$p", profileRowId).ExecuteScalar()! <= 1)
        {
            return ReturnUrlRemoval.LastOne;
        }
        s.Command("DELETE FROM profile_return_urls WHERE profile_id = $p AND url = $u").With("$p", profileRowId).With("$u", url).ExecuteNonQuery();
        BumpProfileGeneration(s);
        return ReturnUrlRemoval.Removed;
    });

    // ---- Consents and "Your apps" ----

    public Task<string?> FindConsentAsync(long userRowId, long profileRowId, CancellationToken ct) => Task.FromResult(_readers.Read(s =>
        (string?)s.Command("SELECT scope FROM consents WHERE user_id = $u AND profile_id = $p")
            .With("$u", userRowId).With("$p", profileRowId).ExecuteScalar()));

    public Task SaveConsentAsync(long userRowId, long profileRowId, IReadOnlyCollection<string> scope, DateTimeOffset now, CancellationToken ct) =>
        _writer.WriteAsync(s =>
        {
            var existing = (string?)s.Command("SELECT scope FROM consents WHERE user_id = $u AND profile_id = $p")
                .With("$u", userRowId).With("$p", profileRowId).ExecuteScalar();
            var union = new SortedSet<string>(scope, StringComparer.Ordinal);
            union.UnionWith((existing ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries));
            return s.Command("""
                INSERT INTO consents (user_id, profile_id, scope, granted_at) VALUES ($u, $p, $s, $t)
                ON CONFLICT (user_id, profile_id) DO UPDATE SET scope = excluded.scope
                """).With("$u", userRowId).With("$p", profileRowId).With("$s", string.Join(' ', union))
                .With("$t", now.ToUnixTimeMilliseconds()).ExecuteNonQuery();
        });

    public Task<IReadOnlyList<UserApp>> ListUserAppsAsync(long userRowId, CancellationToken ct) =>
        Task.FromResult<IReadOnlyList<UserApp>>(_readers.Read(s =>
        {
            using var reader = s.Command("""
                SELECT p.client_id, p.name,
                       (SELECT group_concat(g.scope, ' ') FROM grants g WHERE g.user_id = $u AND g.profile_id = p.id AND g.revoked_at IS NULL),
                       (SELECT c.scope FROM consents c WHERE c.user_id = $u AND c.profile_id = p.id),
                       (SELECT min(g.created_at) FROM grants g WHERE g.user_id = $u AND g.profile_id = p.id AND g.revoked_at IS NULL),
                       (SELECT c.granted_at FROM consents c WHERE c.user_id = $u AND c.profile_id = p.id),
                       (SELECT count(*) FROM grants g WHERE g.user_id = $u AND g.profile_id = p.id AND g.revoked_at IS NULL)
                FROM profiles p
                WHERE p.id IN (SELECT profile_id FROM grants WHERE user_id = $u AND revoked_at IS NULL
                               UNION SELECT profile_id FROM consents WHERE user_id = $u)
                ORDER BY p.name, p.id
                """).With("$u", userRowId).ExecuteReader();
            var apps = new List<UserApp>();
            while (reader.Read())
            {
                var scope = new SortedSet<string>(StringComparer.Ordinal);
                foreach (int column in new[] { 2, 3 })
                {
                    if (!reader.IsDBNull(column))
                    {
                        scope.UnionWith(reader.GetString(column).Split(' ', StringSplitOptions.RemoveEmptyEntries));
                    }
                }
                long since = new[] { 4, 5 }.Where(c => !reader.IsDBNull(c)).Select(reader.GetInt64).Min();
                apps.Add(new UserApp(reader.GetString(0), reader.GetString(1), string.Join(' ', scope), At(since), reader.GetInt32(6)));
            }
            return apps;
        }));

    public Task<int> RemoveUserAppAsync(long userRowId, string clientId, DateTimeOffset now, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        if (ProfileRowId(s, clientId) is not { } profileRowId)
        {
            return 0;
        }
        long at = now.ToUnixTimeMilliseconds();
        // One transaction: every grant (and so every refresh and access token) dies together, and
        // nothing in flight (an unredeemed code, an approved device pair) can bring the app back.
        int revoked = s.Command("""
            UPDATE grants SET revoked_at = $t, revoked_reason = 'removed by the user'
            WHERE user_id = $u AND profile_id = $p AND revoked_at IS NULL
            """).With("$t", at).With("$u", userRowId).With("$p", profileRowId).ExecuteNonQuery();
        s.Command("DELETE FROM consents WHERE user_id = $u AND profile_id = $p").With("$u", userRowId).With("$p", profileRowId).ExecuteNonQuery();
        s.Command("DELETE FROM authorization_codes WHERE user_id = $u AND profile_id = $p AND redeemed_at IS NULL")
            .With("$u", userRowId).With("$p", profileRowId).ExecuteNonQuery();
        s.Command("UPDATE device_codes SET approved = 0 WHERE user_id = $u AND profile_id = $p AND redeemed_at IS NULL")
            .With("$u", userRowId).With("$p", profileRowId).ExecuteNonQuery();
        return revoked;
    });

    // ---- Device code pairs ----

    public Task<bool> InsertDeviceCodeAsync(NewDeviceCode code, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        if (s.Command("SELECT 1 FROM device_codes WHERE user_code = $u").With("$u", code.UserCode).ExecuteScalar() is not null)
        {
            return false;
        }
        s.Command("""
            INSERT INTO device_codes (device_code_hash, user_code, profile_id, scope, interval_ms, created_at, expires_at)
            VALUES ($h, $u, $p, $s, $i, $t, $e)
            """).With("$h", code.DeviceCodeHash).With("$u", code.UserCode).With("$p", code.ProfileRowId).With("$s", code.Scope)
            .With("$i", (long)code.Interval.TotalMilliseconds).With("$t", code.CreatedAt.ToUnixTimeMilliseconds())
            .With("$e", code.ExpiresAt.ToUnixTimeMilliseconds()).ExecuteNonQuery();
        return true;
    });

    public Task<PendingDeviceCode?> FindPendingDeviceCodeAsync(string userCode, DateTimeOffset now, CancellationToken ct) =>
        Task.FromResult(_readers.Read(s =>
        {
            using var reader = s.Command("""
                SELECT d.profile_id, p.client_id, d.scope, d.expires_at
                FROM device_codes d JOIN profiles p ON p.id = d.profile_id
                WHERE d.user_code = $u AND d.decided_at IS NULL AND d.expires_at > $t
                """).With("$u", userCode).With("$t", now.ToUnixTimeMilliseconds()).ExecuteReader();
            return reader.Read()
                ? new PendingDeviceCode(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), At(reader.GetInt64(3)))
                : null;
        }));

    public Task<bool> DecideDeviceCodeAsync(string userCode, long userRowId, bool approved, DateTimeOffset now, CancellationToken ct) =>
        _writer.WriteAsync(s => s.Command("""
            UPDATE device_codes SET user_id = $user, decided_at = $t, approved = $a
            WHERE user_code = $u AND decided_at IS NULL AND expires_at > $t
            """).With("$user", userRowId).With("$t", now.ToUnixTimeMilliseconds()).With("$a", approved ? 1 : 0).With("$u", userCode)
            .ExecuteNonQuery() == 1);

    public Task<DevicePoll> PollDeviceCodeAsync(
        byte[] deviceCodeHash, string userCode, long? profileRowId, byte[] refreshTokenHash, DateTimeOffset now, CancellationToken ct) =>
        _writer.WriteAsync(s =>
        {
            long at = now.ToUnixTimeMilliseconds();
            long pairProfileRowId, userRowId = 0;
            string scope;
            bool decided, approved;
            using (var reader = s.Command("""
                SELECT user_code, profile_id, scope, interval_ms, expires_at, last_polled_at, user_id, decided_at IS NOT NULL,
                       coalesce(approved, 0), redeemed_at IS NOT NULL
                FROM device_codes WHERE device_code_hash = $h
                """).With("$h", deviceCodeHash).ExecuteReader())
            {
                if (!reader.Read() || reader.GetString(0) != userCode || reader.GetBoolean(9)
                    || (profileRowId is not null && reader.GetInt64(1) != profileRowId))
                {
                    return new DevicePoll(DevicePollOutcome.Unknown);
                }
                if (at >= reader.GetInt64(4))
                {
                    return new DevicePoll(DevicePollOutcome.Expired);
                }
                bool tooSoon = !reader.IsDBNull(5) && at - reader.GetInt64(5) < reader.GetInt64(3);
                pairProfileRowId = reader.GetInt64(1);
                scope = reader.GetString(2);
                decided = reader.GetBoolean(7);
                approved = reader.GetInt64(8) != 0;
                if (!reader.IsDBNull(6))
                {
                    userRowId = reader.GetInt64(6);
                }
                reader.Close();
                s.Command("UPDATE device_codes SET last_polled_at = $t WHERE device_code_hash = $h").With("$t", at).With("$h", deviceCodeHash).ExecuteNonQuery();
                if (tooSoon)
                {
                    return new DevicePoll(DevicePollOutcome.SlowDown);
                }
            }
            if (!decided)
            {
                return new DevicePoll(DevicePollOutcome.Pending);
            }
            if (!approved)
            {
                return new DevicePoll(DevicePollOutcome.Denied);
            }
            long grantId = InsertGrant(s, pairProfileRowId, userRowId, scope, at, refreshTokenHash, codeHash: null);
            s.Command("UPDATE device_codes SET redeemed_at = $t, grant_id = $g WHERE device_code_hash = $h")
                .With("$t", at).With("$g", grantId).With("$h", deviceCodeHash).ExecuteNonQuery();
            string clientId = (string)s.Command("SELECT client_id FROM profiles WHERE id = $p").With("$p", pairProfileRowId).ExecuteScalar()!;
            string userId = (string)s.Command("SELECT user_id FROM users WHERE id = $u").With("$u", userRowId).ExecuteScalar()!;
            return new DevicePoll(DevicePollOutcome.Approved, grantId, clientId, userId, scope);
        });

    // ---- Data Protection keys ----

    public Task<IReadOnlyList<string>> ListDataProtectionKeysAsync(CancellationToken ct) =>
        Task.FromResult<IReadOnlyList<string>>(_readers.Read(s =>
        {
            using var reader = s.Command("SELECT xml FROM data_protection_keys ORDER BY id").ExecuteReader();
            var keys = new List<string>();
            while (reader.Read())
            {
                keys.Add(reader.GetString(0));
            }
            return keys;
        }));

    public Task AddDataProtectionKeyAsync(string name, string xml, DateTimeOffset now, CancellationToken ct) =>
        _writer.WriteAsync(s => s.Command("INSERT INTO data_protection_keys (name, xml, created_at) VALUES ($n, $x, $t)")
            .With("$n", name).With("$x", xml).With("$t", now.ToUnixTimeMilliseconds()).ExecuteNonQuery());

    // ---- Sign-in throttling ----

    public Task<SignInFailures> GetSignInFailuresAsync(string key, DateTimeOffset windowStartsAfter, CancellationToken ct) =>
        Task.FromResult(_readers.Read(s =>
        {
            using var reader = s.Command("SELECT failures, window_start FROM sign_in_failures WHERE throttle_key = $k AND window_start >= $w")
                .With("$k", key).With("$w", windowStartsAfter.ToUnixTimeMilliseconds()).ExecuteReader();
            return reader.Read() ? new SignInFailures(reader.GetInt32(0), At(reader.GetInt64(1))) : default;
        }));

    public Task<SignInFailures> RecordSignInFailureAsync(string key, DateTimeOffset now, TimeSpan window, CancellationToken ct) =>
        _writer.WriteAsync(s =>
        {
            long at = now.ToUnixTimeMilliseconds();
            long windowStartsAfter = at - (long)window.TotalMilliseconds;
            using var reader = s.Command("""
                INSERT INTO sign_in_failures (throttle_key, window_start, failures) VALUES ($k, $t, 1)
                ON CONFLICT (throttle_key) DO UPDATE SET
                    failures = CASE WHEN window_start >= $w THEN failures + 1 ELSE 1 END,
                    window_start = CASE WHEN window_start >= $w THEN window_start ELSE $t END
                RETURNING failures, window_start
                """).With("$k", key).With("$t", at).With("$w", windowStartsAfter).ExecuteReader();
            reader.Read();
            return new SignInFailures(reader.GetInt32(0), At(reader.GetInt64(1)));
        });

    public Task ClearSignInFailuresAsync(string key, CancellationToken ct) =>
        _writer.WriteAsync(s => s.Command("DELETE FROM sign_in_failures WHERE throttle_key = $k").With("$k", key).ExecuteNonQuery());

    // ---- Token activity ----

    public Task AddTokenActivityAsync(IReadOnlyList<TokenActivityDelta> deltas, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        foreach (var delta in deltas)
        {
            s.Command("""
                INSERT INTO token_activity (profile_id, hour, issued, refused)
                SELECT id, $h, $i, $r FROM profiles WHERE client_id = $c
                ON CONFLICT (profile_id, hour) DO UPDATE SET issued = issued + excluded.issued, refused = refused + excluded.refused
                """).With("$h", delta.Hour.ToUnixTimeMilliseconds()).With("$i", delta.Issued).With("$r", delta.Refused)
                .With("$c", delta.ClientId).ExecuteNonQuery();
        }
        return deltas.Count;
    });

    public Task<IReadOnlyList<TokenActivityHour>> GetTokenActivityAsync(string clientId, DateTimeOffset from, DateTimeOffset to, CancellationToken ct) =>
        Task.FromResult<IReadOnlyList<TokenActivityHour>>(_readers.Read(s =>
        {
            using var reader = s.Command("""
                SELECT a.hour, a.issued, a.refused FROM token_activity a JOIN profiles p ON p.id = a.profile_id
                WHERE p.client_id = $c AND a.hour >= $f AND a.hour < $t ORDER BY a.hour
                """).With("$c", clientId).With("$f", from.ToUnixTimeMilliseconds()).With("$t", to.ToUnixTimeMilliseconds()).ExecuteReader();
            var hours = new List<TokenActivityHour>();
            while (reader.Read())
            {
                hours.Add(new TokenActivityHour(At(reader.GetInt64(0)), reader.GetInt64(1), reader.GetInt64(2)));
            }
            return hours;
        }));
}
