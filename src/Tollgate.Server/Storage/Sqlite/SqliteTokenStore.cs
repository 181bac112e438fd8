using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace Tollgate.Server.Storage.Sqlite;

/// <summary>
/// The embedded store: one SQLite file in WAL mode with full sync. Reads run on pooled
/// connections; writes go through <see cref="GroupCommitWriter"/>, which also makes every
/// check-then-write below atomic (one writer, inside BEGIN IMMEDIATE).
/// </summary>
internal sealed partial class SqliteTokenStore : ITokenStore
{
    private readonly string _connectionString;
    private readonly ReaderPool _readers;
    private readonly GroupCommitWriter _writer;

    private SqliteTokenStore(string connectionString)
    {
        _connectionString = connectionString;
        _readers = new ReaderPool(connectionString);
        _writer = new GroupCommitWriter(connectionString);
    }

    /// <summary>Opens (creating if needed) the file at <paramref name="path"/>. Does not migrate.</summary>
    public static SqliteTokenStore Open(string path)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null)
        {
            // SQLite syncs the directory it creates its WAL in, so the file's own name lasts; the names of the
            // directories above it, when Tollgate creates them, are made to last here.
            Tollgate.Durability.DurableDirectory.Create(directory);
        }
        var builder = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            // We keep our own long-lived connections (ReaderPool, GroupCommitWriter) with prepared statements.
            Pooling = false,
            // Microsoft.Data.Sqlite retries SQLITE_BUSY for this long on top of busy_timeout; keep the
            // total bounded so a request facing a locked file fails over to 503 within seconds.
            DefaultTimeout = 1,
        };
        return new SqliteTokenStore(builder.ToString());
    }

    public GroupCommitWriter Writer => _writer;

    public Task<SchemaStatus> MigrateAsync(CancellationToken ct) => MigrateToAsync(SqliteMigrations.LatestVersion);

    /// <summary>Migrates to a given version; tests use it to build an old file and upgrade it.</summary>
    internal Task<SchemaStatus> MigrateToAsync(int version)
    {
        // Migrations run on a connection of their own, outside the group commit, because they are
        // DDL in one all-or-nothing transaction; BEGIN IMMEDIATE makes racing processes take turns.
        using var session = new SqliteSession(_connectionString);
        int reached = SqliteMigrations.Apply(session, version);
        return Task.FromResult(new SchemaStatus(reached, SqliteMigrations.LatestVersion));
    }

    public Task<SchemaStatus> GetSchemaStatusAsync(CancellationToken ct) =>
        Task.FromResult(_readers.Read(s => new SchemaStatus(SqliteMigrations.ReadVersion(s), SqliteMigrations.LatestVersion)));

    /// <summary>None: every connection sets <c>synchronous = FULL</c> itself (SqliteSession), and no server limits connections.</summary>
    public Task<StoreRisks> DescribeRisksAsync(CancellationToken ct) => Task.FromResult(StoreRisks.None);

    // ---- Profiles ----

    public Task<Profile?> FindProfileAsync(string clientId, CancellationToken ct) => Task.FromResult(_readers.Read(s =>
    {
        // One statement, so the profile and its lists come from one consistent snapshot.
        using var reader = s.Command("""
            SELECT p.id, p.client_id, p.app_id, p.name, p.is_public, p.refresh_policy, p.rate_limit_per_minute,
                   (SELECT json_group_array(url) FROM profile_return_urls WHERE profile_id = p.id),
                   (SELECT json_group_array(scope) FROM profile_scopes WHERE profile_id = p.id),
                   (SELECT json_group_array(json_array(hex(secret_hash), expires_at)) FROM client_secrets WHERE profile_id = p.id)
            FROM profiles p WHERE p.client_id = $client_id
            """).With("$client_id", clientId).ExecuteReader();
        if (!reader.Read())
        {
            return null;
        }
        var secrets = new List<ClientSecretHash>();
        using (var doc = JsonDocument.Parse(reader.GetString(9)))
        {
            foreach (var entry in doc.RootElement.EnumerateArray())
            {
                var expires = entry[1].ValueKind == JsonValueKind.Null
                    ? (DateTimeOffset?)null
                    : DateTimeOffset.FromUnixTimeMilliseconds(entry[1].GetInt64());
                secrets.Add(new ClientSecretHash(Convert.FromHexString(entry[0].GetString()!), expires));
            }
        }
        return new Profile(
            RowId: reader.GetInt64(0),
            ClientId: reader.GetString(1),
            AppId: reader.GetString(2),
            Name: reader.GetString(3),
            IsPublic: reader.GetInt64(4) != 0,
            RefreshPolicy: RefreshPolicyNames.Parse(reader.GetString(5)) ?? RefreshPolicy.Reuse,
            ReturnUrls: JsonSerializer.Deserialize(reader.GetString(7), StoreJson.Default.StringArray)!,
            RegisteredScopes: new HashSet<string>(JsonSerializer.Deserialize(reader.GetString(8), StoreJson.Default.StringArray)!, StringComparer.Ordinal),
            Secrets: secrets)
        {
            RateLimitPerMinute = reader.IsDBNull(6) ? null : reader.GetInt32(6),
        };
    }));

    public Task<long> GetProfileGenerationAsync(CancellationToken ct) => Task.FromResult(_readers.Read(s =>
        (long)s.Command("SELECT value FROM meta WHERE key = 'profile_generation'").ExecuteScalar()!));

    public Task<bool> CreateProfileAsync(NewProfile profile, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        long? taken = (long?)s.Command("SELECT id FROM profiles WHERE client_id = $c OR app_id = $a")
            .With("$c", profile.ClientId).With("$a", profile.AppId).ExecuteScalar();
        if (taken is not null)
        {
            return false;
        }
        long created = profile.CreatedAt.ToUnixTimeMilliseconds();
        long id = (long)s.Command("""
            INSERT INTO profiles (client_id, app_id, name, is_public, refresh_policy, created_at)
            VALUES ($c, $a, $n, $p, $r, $t) RETURNING id
            """).With("$c", profile.ClientId).With("$a", profile.AppId).With("$n", profile.Name)
            .With("$p", profile.IsPublic ? 1 : 0).With("$r", profile.RefreshPolicy.ToName()).With("$t", created)
            .ExecuteScalar()!;
        foreach (var url in profile.ReturnUrls.Distinct(StringComparer.Ordinal))
        {
            s.Command("INSERT INTO profile_return_urls (profile_id, url) VALUES ($p, $u)").With("$p", id).With("$u", url).ExecuteNonQuery();
        }
        foreach (var scope in profile.RegisteredScopes.Distinct(StringComparer.Ordinal))
        {
            s.Command("INSERT INTO profile_scopes (profile_id, scope) VALUES ($p, $s)").With("$p", id).With("$s", scope).ExecuteNonQuery();
        }
        if (profile.SecretHash is not null)
        {
            s.Command("INSERT INTO client_secrets (profile_id, secret_hash, created_at) VALUES ($p, $h, $t)")
                .With("$p", id).With("$h", profile.SecretHash).With("$t", created).ExecuteNonQuery();
        }
        BumpProfileGeneration(s);
        return true;
    });

    public Task<bool> DeleteProfileAsync(string clientId, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        // Refresh tokens are not linked by a foreign key (schema v6), so the profile's grants go first, each with its
        // tokens; ON DELETE CASCADE removes the rest (secrets, return URLs, scopes, codes). Access tokens die too,
        // because tokeninfo requires their profile and grant to exist.
        DeleteGrants(s, s.Command("SELECT g.id FROM grants g JOIN profiles p ON p.id = g.profile_id WHERE p.client_id = $c").With("$c", clientId));
        int deleted = s.Command("DELETE FROM profiles WHERE client_id = $c").With("$c", clientId).ExecuteNonQuery();
        if (deleted > 0)
        {
            BumpProfileGeneration(s);
        }
        return deleted > 0;
    });

    public Task<bool> SetProfileRateLimitAsync(string clientId, int? perMinute, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        int updated = s.Command("UPDATE profiles SET rate_limit_per_minute = $r WHERE client_id = $c")
            .With("$r", perMinute).With("$c", clientId).ExecuteNonQuery();
        if (updated > 0)
        {
            BumpProfileGeneration(s);
        }
        return updated > 0;
    });

    public Task<bool> RotateClientSecretAsync(
        string clientId, byte[] newSecretHash, DateTimeOffset now, DateTimeOffset oldSecretsExpireAt, CancellationToken ct) =>
        _writer.WriteAsync(s =>
        {
            long? profileId = (long?)s.Command("SELECT id FROM profiles WHERE client_id = $c AND is_public = 0")
                .With("$c", clientId).ExecuteScalar();
            if (profileId is null)
            {
                return false;
            }
            // Older secrets end at the overlap's end, or earlier if they were already due to.
            long until = oldSecretsExpireAt.ToUnixTimeMilliseconds();
            s.Command("UPDATE client_secrets SET expires_at = $e WHERE profile_id = $p AND (expires_at IS NULL OR expires_at > $e)")
                .With("$e", until).With("$p", profileId).ExecuteNonQuery();
            s.Command("INSERT INTO client_secrets (profile_id, secret_hash, created_at) VALUES ($p, $h, $t)")
                .With("$p", profileId).With("$h", newSecretHash).With("$t", now.ToUnixTimeMilliseconds()).ExecuteNonQuery();
            BumpProfileGeneration(s);
            return true;
        });

    // One file has no other node to hear from; the profile cache's poll of the generation is the whole mechanism.
    public Task WaitForProfileChangeAsync(TimeSpan maxWait, CancellationToken ct) => Task.Delay(maxWait, ct);

    private static void BumpProfileGeneration(SqliteSession s) =>
        s.Execute("UPDATE meta SET value = value + 1 WHERE key = 'profile_generation'");

    // ---- Users ----

    public Task<bool> CreateUserAsync(NewUser user, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        long? taken = (long?)s.Command("SELECT id FROM users WHERE email = $e OR user_id = $u")
            .With("$e", user.Email).With("$u", user.UserId).ExecuteScalar();
        if (taken is not null)
        {
            return false;
        }
        s.Command("INSERT INTO users (user_id, email, name, password_hash, created_at) VALUES ($u, $e, $n, $h, $t)")
            .With("$u", user.UserId).With("$e", user.Email).With("$n", user.Name).With("$h", user.PasswordHash)
            .With("$t", user.CreatedAt.ToUnixTimeMilliseconds()).ExecuteNonQuery();
        return true;
    });

    public Task<User?> FindUserByEmailAsync(string email, CancellationToken ct) =>
        Task.FromResult(FindUser("email", email));

    public Task<User?> FindUserByUserIdAsync(string userId, CancellationToken ct) =>
        Task.FromResult(FindUser("user_id", userId));

    private User? FindUser(string column, string value) => _readers.Read(s =>
    {
        using var reader = s.Command($"SELECT id, user_id, email, name, password_hash FROM users WHERE {column} = $v")
            .With("$v", value).ExecuteReader();
        return reader.Read()
            ? new User(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4))
            : null;
    });

    // ---- Codes ----

    public Task InsertCodeAsync(NewCode code, CancellationToken ct) => _writer.WriteAsync(s => s.Command("""
        INSERT INTO authorization_codes
            (code_hash, profile_id, user_id, redirect_uri, scope, code_challenge, code_challenge_method, created_at, expires_at)
        VALUES ($h, $p, $u, $r, $s, $c, $m, $t, $e)
        """).With("$h", code.CodeHash).With("$p", code.ProfileRowId).With("$u", code.UserRowId)
        .With("$r", code.RedirectUri).With("$s", code.Scope).With("$c", code.CodeChallenge).With("$m", code.CodeChallengeMethod)
        .With("$t", code.CreatedAt.ToUnixTimeMilliseconds()).With("$e", code.ExpiresAt.ToUnixTimeMilliseconds())
        .ExecuteNonQuery());

    public Task<CodeRedemption> RedeemCodeAsync(
        byte[] codeHash, byte[] refreshTokenHash, long profileRowId, RedemptionTerms terms, CancellationToken ct) =>
        _writer.WriteAsync((codeHash, refreshTokenHash, profileRowId, terms), static (s, w) =>
        {
            var (codeHash, refreshTokenHash, profileRowId, terms) = w;
            long at = terms.Now.ToUnixTimeMilliseconds();
            // The writer reads the code itself, as rotation does: its page cache is warm, where a reader's was emptied
            // by the last commit, and reading under the write lock leaves no moment for another redemption to slip in.
            long userRowId, replayedGrant;
            AuthorizationCode code;
            using (var reader = s.Command("""
                SELECT c.profile_id, u.user_id, c.redirect_uri, c.scope, c.code_challenge, c.code_challenge_method,
                       c.expires_at, c.redeemed_at IS NOT NULL, c.user_id, coalesce(c.grant_id, 0)
                FROM authorization_codes c JOIN users u ON u.id = c.user_id
                WHERE c.code_hash = $h
                """).With("$h", codeHash).ExecuteReader())
            {
                if (!reader.Read())
                {
                    return new CodeRedemption(CodeRedemptionOutcome.Unknown, 0, null);
                }
                code = new AuthorizationCode(
                    reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3),
                    reader.IsDBNull(4) ? null : reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5),
                    DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(6)), reader.GetBoolean(7));
                userRowId = reader.GetInt64(8);
                replayedGrant = reader.GetInt64(9);
            }
            if (code.ProfileRowId != profileRowId)
            {
                return new CodeRedemption(CodeRedemptionOutcome.Unknown, 0, null);
            }
            if (code.Redeemed)
            {
                RevokeGrant(s, replayedGrant, at, "authorization code replayed");
                return new CodeRedemption(CodeRedemptionOutcome.Replayed, replayedGrant, code);
            }
            if (!terms.Admits(code))
            {
                return new CodeRedemption(CodeRedemptionOutcome.Refused, 0, code);
            }
            long grantId = InsertGrant(s, profileRowId, userRowId, code.Scope, at, refreshTokenHash, codeHash);
            s.Command("UPDATE authorization_codes SET redeemed_at = $t, grant_id = $g WHERE code_hash = $h")
                .With("$t", at).With("$g", grantId).With("$h", codeHash).ExecuteNonQuery();
            return new CodeRedemption(CodeRedemptionOutcome.Redeemed, grantId, code);
        });

    // ---- Refresh tokens and grants ----

    public Task<RefreshToken?> FindRefreshTokenAsync(byte[] tokenHash, CancellationToken ct) =>
        Task.FromResult(_readers.Read(tokenHash, static (s, tokenHash) => ReadRefreshToken(s, tokenHash)));

    private static RefreshToken? ReadRefreshToken(SqliteSession s, byte[] tokenHash)
    {
        using var reader = s.Command("""
            SELECT g.id, g.profile_id, u.user_id, g.scope, t.consumed_at, g.revoked_at IS NOT NULL
            FROM refresh_tokens t
            JOIN grants g ON g.id = t.grant_id
            JOIN users u ON u.id = g.user_id
            WHERE t.token_hash = $h
              -- A token is never older than its grant. Without a foreign key, this keeps a token that outlived its
              -- grant (the store deletes them together; this is the second line) from joining a later grant that
              -- was given the same id.
              AND t.created_at >= g.created_at
            """).With("$h", tokenHash).ExecuteReader();
        return reader.Read()
            ? new RefreshToken(
                reader.GetInt64(0), reader.GetInt64(1), reader.GetString(2), reader.GetString(3),
                reader.IsDBNull(4) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4)),
                reader.GetBoolean(5))
            : null;
    }

    public Task<Rotation> RotateRefreshTokenAsync(
        byte[] presentedHash, byte[] successorHash, long profileRowId, DateTimeOffset now, TimeSpan graceWindow, CancellationToken ct) =>
        _writer.WriteAsync((presentedHash, successorHash, profileRowId, now, graceWindow), static (s, w) =>
        {
            var (presentedHash, successorHash, profileRowId, now, graceWindow) = w;
            long at = now.ToUnixTimeMilliseconds();
            // The writer reads the token itself: its page cache is warm, where a reader's was emptied by the last commit.
            var token = ReadRefreshToken(s, presentedHash);
            var decision = RotationRule.Decide(token, profileRowId, now, graceWindow);
            switch (decision)
            {
                case RotationOutcome.Unknown:
                    return new Rotation(decision, null);
                case RotationOutcome.Rotated:
                    // The successor is found from the token it replaces, so it needs no index entry of its own.
                    s.Command("UPDATE refresh_tokens SET consumed_at = $t, successor = $s WHERE token_hash = $h")
                        .With("$t", at).With("$s", successorHash).With("$h", presentedHash).ExecuteNonQuery();
                    InsertRefreshToken(s, successorHash, token!.GrantId, at, isRoot: false);
                    break;
                case RotationOutcome.ReplayedWithinGrace:
                    // The consumed token already names its first successor; a second one starts a chain of its own.
                    InsertRefreshToken(s, successorHash, token!.GrantId, at, isRoot: true);
                    break;
                case RotationOutcome.ReuseDetected:
                    RevokeGrant(s, token!.GrantId, at, RotationRule.ReuseRevocationReason);
                    break;
            }
            return new Rotation(decision, token);
        });

    public Task<bool> IsGrantActiveAsync(long grantId, CancellationToken ct) => Task.FromResult(_readers.Read(grantId, static (s, grantId) =>
        s.Command("SELECT 1 FROM grants WHERE id = $g AND revoked_at IS NULL").With("$g", grantId).ExecuteScalar() is not null));

    /// <summary>
    /// Starts a grant with its first refresh token. The grant's row names that token and the code it came from
    /// (<paramref name="codeHash"/>, null for a device code), so neither needs an index entry to be found from the
    /// grant when it is deleted (schema v7).
    /// </summary>
    private static long InsertGrant(SqliteSession s, long profileRowId, long userRowId, string scope, long at, byte[] firstToken, byte[]? codeHash)
    {
        long grantId = (long)s.Command("""
            INSERT INTO grants (profile_id, user_id, scope, created_at, first_token, code_hash) VALUES ($p, $u, $s, $t, $f, $c)
            RETURNING id
            """).With("$p", profileRowId).With("$u", userRowId).With("$s", scope).With("$t", at)
            .With("$f", firstToken).With("$c", codeHash).ExecuteScalar()!;
        InsertRefreshToken(s, firstToken, grantId, at, isRoot: false);
        return grantId;
    }

    /// <summary>
    /// Stores a refresh token. <paramref name="isRoot"/>: the token starts a chain that nothing else names, so it is
    /// indexed by grant; false for a rotation's successor, which the token it replaces names (schema v6), and for a
    /// grant's first token, which the grant names (schema v7).
    /// </summary>
    private static void InsertRefreshToken(SqliteSession s, byte[] tokenHash, long grantId, long at, bool isRoot) =>
        s.Command("INSERT INTO refresh_tokens (token_hash, grant_id, created_at, is_root) VALUES ($h, $g, $t, $r)")
            .With("$h", tokenHash).With("$g", grantId).With("$t", at).With("$r", isRoot).ExecuteNonQuery();

    /// <summary>
    /// Deletes the grants <paramref name="selectGrantIds"/> names, each with its refresh tokens and the code it came
    /// from (neither has a foreign key to cascade along); deleting a grant cascades to its device code. Returns how many.
    /// </summary>
    private static int DeleteGrants(SqliteSession s, SqliteCommand selectGrantIds)
    {
        var grants = new List<long>();
        using (var reader = selectGrantIds.ExecuteReader())
        {
            while (reader.Read())
            {
                grants.Add(reader.GetInt64(0));
            }
        }
        foreach (long grant in grants)
        {
            DeleteGrant(s, grant);
        }
        return grants.Count;
    }

    private static void DeleteGrant(SqliteSession s, long grantId)
    {
        byte[]? firstToken = null, codeHash = null;
        using (var deleted = s.Command("DELETE FROM grants WHERE id = $g RETURNING first_token, code_hash").With("$g", grantId).ExecuteReader())
        {
            if (deleted.Read())
            {
                firstToken = deleted.IsDBNull(0) ? null : (byte[])deleted.GetValue(0);
                codeHash = deleted.IsDBNull(1) ? null : (byte[])deleted.GetValue(1);
            }
        }
        if (codeHash is not null)
        {
            // SQLite gives a new grant the id of a deleted newest one: a redeemed code left behind would name the new
            // grant, and replaying it would revoke a grant it never produced.
            s.Command("DELETE FROM authorization_codes WHERE code_hash = $h AND grant_id = $g")
                .With("$h", codeHash).With("$g", grantId).ExecuteNonQuery();
        }
        DeleteTokensOfGrant(s, grantId, firstToken);
    }

    /// <summary>
    /// Deletes every refresh token of a grant: from its first token (which the grant's row names) and each chain's
    /// root (the grant's only index entries) along the successors each consumed token names. Pruning keeps that walk
    /// whole: when it deletes a consumed token, the successor becomes a root.
    /// </summary>
    private static void DeleteTokensOfGrant(SqliteSession s, long grantId, byte[]? firstToken)
    {
        var pending = new Stack<byte[]>();
        if (firstToken is not null)
        {
            pending.Push(firstToken);
        }
        using (var roots = s.Command("SELECT token_hash FROM refresh_tokens WHERE grant_id = $g AND is_root = 1")
            .With("$g", grantId).ExecuteReader())
        {
            while (roots.Read())
            {
                pending.Push((byte[])roots.GetValue(0));
            }
        }
        while (pending.TryPop(out var token))
        {
            var successor = s.Command("DELETE FROM refresh_tokens WHERE token_hash = $h AND grant_id = $g RETURNING successor")
                .With("$h", token).With("$g", grantId).ExecuteScalar();
            if (successor is byte[] next)
            {
                pending.Push(next);
            }
        }
    }

    private static void RevokeGrant(SqliteSession s, long grantId, long at, string reason)
    {
        int revoked = s.Command("UPDATE grants SET revoked_at = $t, revoked_reason = $r WHERE id = $g AND revoked_at IS NULL")
            .With("$t", at).With("$r", reason).With("$g", grantId).ExecuteNonQuery();
        if (revoked > 0)
        {
            // Nodes cache which grants are active (tokeninfo); the generation tells them to forget.
            BumpProfileGeneration(s);
        }
    }

    // ---- Housekeeping ----

    public async Task<PruneResult> PruneAsync(PrunePolicy policy, Action<PruneResult>? progress, CancellationToken ct)
    {
        // Each batch is one small write in the group-commit queue, so token requests queued behind it wait for
        // at most one batch; SQLite's single writer means no second process can prune at the same moment.
        var total = PruneResult.None;
        long cutoff = policy.CutoffMilliseconds;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            var (codes, tokens, grants) = await _writer.WriteAsync(s =>
            {
                int codes = s.Command("""
                    DELETE FROM authorization_codes WHERE code_hash IN
                        (SELECT code_hash FROM authorization_codes WHERE expires_at < $cut LIMIT $n)
                    """).With("$cut", cutoff).With("$n", policy.BatchSize).ExecuteNonQuery();
                // A pruned token's successor becomes the root of what is left of its chain, so the grant's tokens can
                // still all be found (DeleteTokensOfGrant). Both statements pick the same batch: the oldest consumed.
                s.Command("""
                    UPDATE refresh_tokens SET is_root = 1 WHERE is_root = 0 AND token_hash IN
                        (SELECT successor FROM refresh_tokens WHERE consumed_at < $cut ORDER BY consumed_at, token_hash LIMIT $n)
                    """).With("$cut", cutoff).With("$n", policy.BatchSize).ExecuteNonQuery();
                int tokens = s.Command("""
                    DELETE FROM refresh_tokens WHERE token_hash IN
                        (SELECT token_hash FROM refresh_tokens WHERE consumed_at < $cut ORDER BY consumed_at, token_hash LIMIT $n)
                    """).With("$cut", cutoff).With("$n", policy.BatchSize).ExecuteNonQuery();
                // Revoked grants, each with its remaining refresh tokens and the code it came from.
                int grants = DeleteGrants(s, s.Command("SELECT id FROM grants WHERE revoked_at < $cut LIMIT $n")
                    .With("$cut", cutoff).With("$n", policy.BatchSize));
                return (codes, tokens, grants);
            });
            total = total.Add(codes, tokens, grants);
            progress?.Invoke(total);
            if (codes < policy.BatchSize && tokens < policy.BatchSize && grants < policy.BatchSize)
            {
                return total;
            }
        }
    }

    // ---- Keys ----

    public Task<AccessTokenKeys> GetOrCreateAccessTokenKeysAsync(byte[] candidateKey, DateTimeOffset now, CancellationToken ct) =>
        // Inside the writer's transaction, so two processes starting at once agree on one key.
        _writer.WriteAsync(s =>
        {
            if (s.Command("SELECT 1 FROM access_token_keys LIMIT 1").ExecuteScalar() is null)
            {
                s.Command("INSERT INTO access_token_keys (material, created_at) VALUES ($m, $t)")
                    .With("$m", candidateKey).With("$t", now.ToUnixTimeMilliseconds()).ExecuteNonQuery();
            }
            var keys = new Dictionary<int, byte[]>();
            int current = 0;
            using var reader = s.Command("SELECT id, material FROM access_token_keys ORDER BY id").ExecuteReader();
            while (reader.Read())
            {
                current = reader.GetInt32(0);
                keys[current] = (byte[])reader.GetValue(1);
            }
            return new AccessTokenKeys(keys, current);
        });

    public Task<IReadOnlyList<StoredAccessTokenKey>> ListAccessTokenKeysAsync(CancellationToken ct) =>
        Task.FromResult<IReadOnlyList<StoredAccessTokenKey>>(_readers.Read(ReadKeys));

    private static List<StoredAccessTokenKey> ReadKeys(SqliteSession s)
    {
        var keys = new List<StoredAccessTokenKey>();
        using var reader = s.Command("""
            SELECT id, material, protection, created_at, COALESCE(activates_at, created_at) FROM access_token_keys ORDER BY id
            """).ExecuteReader();
        while (reader.Read())
        {
            keys.Add(new StoredAccessTokenKey(
                reader.GetInt32(0), (byte[])reader.GetValue(1), reader.IsDBNull(2) ? null : reader.GetString(2),
                DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(3)), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4))));
        }
        return keys;
    }

    public Task<bool> AddAccessTokenKeyAsync(StoredAccessTokenKey key, DateTimeOffset unlessCreatedAfter, CancellationToken ct) =>
        _writer.WriteAsync(s => s.Command("""
            INSERT INTO access_token_keys (material, protection, created_at, activates_at)
            SELECT $m, $p, $c, $a WHERE NOT EXISTS (SELECT 1 FROM access_token_keys WHERE created_at > $after)
            """).With("$m", key.Material).With("$p", key.Protection).With("$c", key.CreatedAt.ToUnixTimeMilliseconds())
            .With("$a", key.ActivatesAt.ToUnixTimeMilliseconds()).With("$after", unlessCreatedAfter.ToUnixTimeMilliseconds())
            .ExecuteNonQuery() > 0);

    public Task<bool> ReplaceAccessTokenKeyMaterialAsync(int id, byte[] material, string? protection, string? expectedProtection, CancellationToken ct) =>
        _writer.WriteAsync(s => s.Command("""
            UPDATE access_token_keys SET material = $m, protection = $p WHERE id = $id AND protection IS $expected
            """).With("$m", material).With("$p", protection).With("$id", id).With("$expected", expectedProtection).ExecuteNonQuery() > 0);

    public Task<int> DeleteAccessTokenKeysAsync(IReadOnlyList<int> ids, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        int deleted = 0;
        foreach (int id in ids)
        {
            deleted += s.Command("DELETE FROM access_token_keys WHERE id = $id").With("$id", id).ExecuteNonQuery();
        }
        return deleted;
    });

    // ---- Audit trail ----

    public Task AppendAuditEventsAsync(IReadOnlyList<AuditEvent> events, CancellationToken ct) => _writer.WriteAsync(s =>
    {
        foreach (var e in events)
        {
            s.Command("""
                INSERT INTO audit_events (at, event, client_id, user_id, ip, request_id, detail)
                VALUES ($at, $event, $client, $user, $ip, $request, $detail)
                """).With("$at", e.At.ToUnixTimeMilliseconds()).With("$event", e.Event).With("$client", e.ClientId)
                .With("$user", e.UserId).With("$ip", e.Ip).With("$request", e.RequestId).With("$detail", e.Detail).ExecuteNonQuery();
        }
        return events.Count;
    });

    public Task<IReadOnlyList<AuditRecord>> ListAuditEventsAsync(AuditQuery query, CancellationToken ct) =>
        Task.FromResult<IReadOnlyList<AuditRecord>>(_readers.Read(s =>
        {
            var records = new List<AuditRecord>();
            using var reader = s.Command("""
                SELECT id, at, event, client_id, user_id, ip, request_id, detail FROM audit_events
                WHERE ($since IS NULL OR at >= $since) AND ($client IS NULL OR client_id = $client) AND ($event IS NULL OR event = $event)
                ORDER BY at DESC, id DESC LIMIT $limit
                """).With("$since", query.Since?.ToUnixTimeMilliseconds()).With("$client", query.ClientId)
                .With("$event", query.Event).With("$limit", query.Limit).ExecuteReader();
            while (reader.Read())
            {
                records.Add(new AuditRecord(reader.GetInt64(0), new AuditEvent(
                    DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)), reader.GetString(2),
                    NullableString(reader, 3), NullableString(reader, 4), NullableString(reader, 5), NullableString(reader, 6), NullableString(reader, 7))));
            }
            return records;
        }));

    private static string? NullableString(SqliteDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

    public async ValueTask DisposeAsync()
    {
        await _writer.DisposeAsync();
        _readers.Dispose();
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string[]))]
internal sealed partial class StoreJson : System.Text.Json.Serialization.JsonSerializerContext;
