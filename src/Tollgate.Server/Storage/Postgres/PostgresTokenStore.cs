using System.Data;
using Npgsql;

namespace Tollgate.Server.Storage.Postgres;

/// <summary>
/// The shared store for several stateless nodes: PostgreSQL through Npgsql. Every decision that must
/// hold across nodes is taken inside one READ COMMITTED transaction with a row lock or a conditional
/// update, never by a read followed by a separate write:
/// a code is claimed with <c>UPDATE … WHERE redeemed_at IS NULL RETURNING</c>, a refresh token is
/// locked with <c>SELECT … FOR UPDATE</c> before it is consumed. Racing requests therefore queue on
/// one row and then see the winner's committed result, instead of failing with serialization errors.
/// </summary>
/// <remarks>
/// Durability: every connection runs with <c>synchronous_commit = on</c> (unless the connection string
/// sets it), so a method returns only after its commit is flushed to the WAL, and a token a node answered
/// with survives a crash of the database server. Transient failures are retried here (<see cref="PostgresRetry"/>);
/// a retried write whose first commit may have succeeded before the connection dropped recognises its own
/// result by the random successor hash it wrote, so a retry never turns a success into a replay.
/// </remarks>
internal sealed partial class PostgresTokenStore : ITokenStore
{
    /// <summary>Advisory lock keys ("tollgate" + n), shared by every node on one database.</summary>
    internal const long PruneLockKey = 0x746F6C6C67617402;
    private const long KeysLockKey = 0x746F6C6C67617403;

    /// <summary>NOTIFY channel raised, on commit, by every profile change.</summary>
    public const string ProfileChannel = "tollgate_profiles";

    private readonly NpgsqlDataSource _dataSource;
    private readonly CancellationTokenSource _disposing = new();
    private readonly TokenGate _gate = new();
    private readonly Lock _listenerGate = new();
    private Task? _listener;
    private TaskCompletionSource _profileChanged = NewSignal();

    private readonly PostgresGroupCommit<LiveRotation, RefreshToken> _rotations;
    private readonly PostgresGroupCommit<FreshRedemption, CodeClaim> _redemptions;

    private PostgresTokenStore(NpgsqlDataSource dataSource)
    {
        _dataSource = dataSource;
        _rotations = new(RotateLiveTokensAsync, RotateLiveTokenAsync, BatchesInFlight, _disposing.Token);
        _redemptions = new(RedeemFreshCodesAsync, RedeemFreshCodeAsync, BatchesInFlight, _disposing.Token);
    }

    /// <summary>
    /// How many batches of one kind a node keeps at the database at once (see <see cref="PostgresGroupCommit{TItem, TResult}"/>).
    /// Measured at 16 connections on one node: one and two in flight rotate alike (1.6 to 1.7 times the throughput of a
    /// statement per request), four formed batches of 1.4 and fell below it. Two, so that a batch held up (a foreign-key
    /// check waiting on a grant being deleted) does not hold up every rotation on the node.
    /// </summary>
    private const int BatchesInFlight = 2;

    /// <summary>What the rotation batches carried so far (for tests).</summary>
    internal (long Batches, long Items) RotationBatches => _rotations.Sent;

    /// <summary>What the code redemption batches carried so far (for tests).</summary>
    internal (long Batches, long Items) RedemptionBatches => _redemptions.Sent;

    /// <summary>Code redemptions queued behind the two in flight (for tests).</summary>
    internal int RedemptionsWaiting => _redemptions.Waiting;

    /// <summary>The store's own pool, for tests that must look at a session exactly as the store opens it.</summary>
    internal NpgsqlDataSource DataSource => _dataSource;

    /// <summary>Opens a pool on <paramref name="connectionString"/> (Npgsql syntax). Does not connect or migrate.</summary>
    /// <exception cref="ArgumentException">The connection string is malformed.</exception>
    public static PostgresTokenStore Open(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        string options = builder.Options ?? "";
        // Durable commits whatever the server's default; and a request that waits on a row lock held by a stuck
        // transaction gives up after 3 s (55P03, answered 503) instead of tying up a thread and a connection forever.
        if (!options.Contains("synchronous_commit", StringComparison.Ordinal))
        {
            options += " -c synchronous_commit=on";
        }
        if (!options.Contains("lock_timeout", StringComparison.Ordinal))
        {
            options += " -c lock_timeout=3000";
        }
        builder.Options = options.Trim();
        if (string.IsNullOrEmpty(builder.ApplicationName))
        {
            builder.ApplicationName = "tollgate";
        }
        if (builder.MaxAutoPrepare == 0)
        {
            // The token endpoint runs a handful of statements over and over: prepare them once per connection.
            builder.MaxAutoPrepare = 64;
        }
        return new PostgresTokenStore(new NpgsqlDataSourceBuilder(builder.ConnectionString).Build());
    }

    /// <summary>
    /// Two start-up checks, read in one query. The pool: past <c>max_connections</c> (less the slots reserved for
    /// superusers) PostgreSQL refuses new connections with 53300, which the store retries and then answers 503, a
    /// load-dependent outage a start-up check can name in advance. Durability: Tollgate forces
    /// <c>synchronous_commit = on</c> in its own sessions, but its connection string may override that, and <c>fsync</c>
    /// and <c>full_page_writes</c> are the server's: an operator who turned them off for a fast throwaway database
    /// (common in CI) should be told before that database holds anyone's tokens. The kill tests cannot tell these apart
    /// from a durable setup; only a power cut shows them (<c>..._survives_a_power_cut_of_the_PostgreSQL_machine</c>).
    /// </summary>
    public async Task<StoreRisks> DescribeRisksAsync(CancellationToken ct)
    {
        long admitted;
        string fsync, fullPageWrites, synchronousCommit;
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(ct);
            await using var command = Sql(connection, null, """
                SELECT current_setting('max_connections')::bigint - current_setting('superuser_reserved_connections')::bigint,
                       current_setting('fsync'), current_setting('full_page_writes'), current_setting('synchronous_commit')
                """);
            await using var reader = await command.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            (admitted, fsync, fullPageWrites, synchronousCommit) = (reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3));
        }
        catch (Exception e) when (e is NpgsqlException or InvalidCastException)
        {
            return StoreRisks.None; // the checks are advice; the store's own errors surface on real requests
        }

        int pool = new NpgsqlConnectionStringBuilder(_dataSource.ConnectionString).MaxPoolSize;
        // + 1: the connection that LISTENs for profile changes lives outside the pool's work.
        string? overBudget = pool + 1 <= admitted ? null
            : $"Maximum Pool Size {pool}, plus the listening connection, is more than PostgreSQL admits ({admitted}: max_connections "
              + "less the superuser reserve): under load new connections will be refused (53300) and requests answered 503. Keep the "
              + "nodes' pools, one more connection each, and admin sessions below it; see Sizing in docs/multi-node.md.";
        List<string> durability = [];
        if (fsync == "off")
        {
            durability.Add("PostgreSQL runs with fsync=off: it never forces its writes to disk, so if the database machine crashes or "
                           + "loses power, tokens this node answered are lost and the database itself may be corrupt. Fine for a "
                           + "throwaway test database, never for one that holds real tokens.");
        }
        if (fullPageWrites == "off")
        {
            durability.Add("PostgreSQL runs with full_page_writes=off: a page half-written when the database machine loses power "
                           + "cannot be repaired from the WAL, unless its file system never tears a page (ZFS, for one).");
        }
        if (synchronousCommit == "off")
        {
            durability.Add("The connection string sets synchronous_commit=off: PostgreSQL acknowledges a commit before it is on disk, "
                           + "so tokens this node answered in the last moments before a crash of PostgreSQL are lost. Remove the "
                           + "setting: Tollgate's sessions otherwise commit synchronously whatever the server's default.");
        }
        return new StoreRisks(durability, overBudget);
    }

    // ---- Plumbing: transactions with retries ----

    /// <summary>
    /// Runs <paramref name="work"/> in a READ COMMITTED transaction and commits it; retries the whole transaction
    /// on transient failures. <c>attempt</c> tells the work whether an earlier attempt may have committed.
    /// </summary>
    private async Task<T> WriteAsync<T>(Func<NpgsqlConnection, NpgsqlTransaction, int, Task<T>> work, CancellationToken ct)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                await using var connection = await _dataSource.OpenConnectionAsync(ct);
                await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.ReadCommitted, ct);
                var result = await work(connection, transaction, attempt);
                await transaction.CommitAsync(ct);
                return result;
            }
            catch (Exception e) when (attempt < PostgresRetry.MaxAttempts && PostgresRetry.IsTransient(e) && !ct.IsCancellationRequested)
            {
                await Task.Delay(PostgresRetry.Backoff(attempt), ct);
            }
        }
    }

    private async Task<T> ReadAsync<T>(Func<NpgsqlConnection, Task<T>> read, CancellationToken ct)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                await using var connection = await _dataSource.OpenConnectionAsync(ct);
                return await read(connection);
            }
            catch (Exception e) when (attempt < PostgresRetry.MaxAttempts && PostgresRetry.IsTransient(e) && !ct.IsCancellationRequested)
            {
                await Task.Delay(PostgresRetry.Backoff(attempt), ct);
            }
        }
    }

    private static NpgsqlCommand Sql(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = new NpgsqlCommand(sql, connection, transaction);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }
        return command;
    }

    private static async Task<int> ExecuteAsync(NpgsqlConnection c, NpgsqlTransaction? t, CancellationToken ct, string sql, params (string, object?)[] parameters)
    {
        await using var command = Sql(c, t, sql, parameters);
        return await command.ExecuteNonQueryAsync(ct);
    }

    private static async Task<object?> ScalarAsync(NpgsqlConnection c, NpgsqlTransaction? t, CancellationToken ct, string sql, params (string, object?)[] parameters)
    {
        await using var command = Sql(c, t, sql, parameters);
        var value = await command.ExecuteScalarAsync(ct);
        return value is DBNull ? null : value;
    }

    // ---- Schema ----

    public Task<SchemaStatus> MigrateAsync(CancellationToken ct) => MigrateToAsync(PostgresMigrations.LatestVersion, ct);

    /// <summary>Migrates to a given version; tests use it to build an old database and upgrade it.</summary>
    internal async Task<SchemaStatus> MigrateToAsync(int version, CancellationToken ct = default)
    {
        int reached = await PostgresMigrations.ApplyAsync(_dataSource, version, ct);
        return new SchemaStatus(reached, PostgresMigrations.LatestVersion);
    }

    public Task<SchemaStatus> GetSchemaStatusAsync(CancellationToken ct) => ReadAsync(async c =>
        new SchemaStatus(await PostgresMigrations.ReadVersionAsync(c, null, ct), PostgresMigrations.LatestVersion), ct);

    // ---- Profiles ----

    public Task<Profile?> FindProfileAsync(string clientId, CancellationToken ct) => ReadAsync(async c =>
    {
        // One statement, so the profile and its lists come from one snapshot.
        await using var command = Sql(c, null, """
            SELECT p.id, p.client_id, p.app_id, p.name, p.is_public, p.refresh_policy,
                   ARRAY(SELECT url FROM profile_return_urls WHERE profile_id = p.id ORDER BY url),
                   ARRAY(SELECT scope FROM profile_scopes WHERE profile_id = p.id ORDER BY scope),
                   ARRAY(SELECT secret_hash FROM client_secrets WHERE profile_id = p.id ORDER BY id),
                   ARRAY(SELECT expires_at FROM client_secrets WHERE profile_id = p.id ORDER BY id),
                   p.rate_limit_per_minute
            FROM profiles p WHERE p.client_id = @client_id
            """, ("client_id", clientId));
        await using var reader = await command.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct))
        {
            return null;
        }
        var hashes = reader.GetFieldValue<byte[][]>(8);
        var expiries = reader.GetFieldValue<long?[]>(9);
        var secrets = hashes.Select((hash, i) => new ClientSecretHash(
            hash, expiries[i] is { } ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null)).ToList();
        return (Profile?)new Profile(
            RowId: reader.GetInt64(0),
            ClientId: reader.GetString(1),
            AppId: reader.GetString(2),
            Name: reader.GetString(3),
            IsPublic: reader.GetBoolean(4),
            RefreshPolicy: RefreshPolicyNames.Parse(reader.GetString(5)) ?? RefreshPolicy.Reuse,
            ReturnUrls: reader.GetFieldValue<string[]>(6),
            RegisteredScopes: new HashSet<string>(reader.GetFieldValue<string[]>(7), StringComparer.Ordinal),
            Secrets: secrets)
        {
            RateLimitPerMinute = reader.IsDBNull(10) ? null : reader.GetInt32(10),
        };
    }, ct);

    public Task<long> GetProfileGenerationAsync(CancellationToken ct) => ReadAsync(async c =>
        (long)(await ScalarAsync(c, null, ct, "SELECT value FROM meta WHERE key = 'profile_generation'"))!, ct);

    public Task<bool> CreateProfileAsync(NewProfile profile, CancellationToken ct) => WriteAsync(async (c, t, _) =>
    {
        long created = profile.CreatedAt.ToUnixTimeMilliseconds();
        // ON CONFLICT DO NOTHING: a client id or app id taken, even by a node racing us, is an answer, not an error.
        var id = (long?)await ScalarAsync(c, t, ct, """
            INSERT INTO profiles (client_id, app_id, name, is_public, refresh_policy, created_at)
            VALUES (@c, @a, @n, @p, @r, @t) ON CONFLICT DO NOTHING RETURNING id
            """, ("c", profile.ClientId), ("a", profile.AppId), ("n", profile.Name), ("p", profile.IsPublic),
            ("r", profile.RefreshPolicy.ToName()), ("t", created));
        if (id is null)
        {
            return false;
        }
        await ExecuteAsync(c, t, ct, "INSERT INTO profile_return_urls (profile_id, url) SELECT @p, unnest(@u::text[]) ON CONFLICT DO NOTHING",
            ("p", id), ("u", profile.ReturnUrls.ToArray()));
        await ExecuteAsync(c, t, ct, "INSERT INTO profile_scopes (profile_id, scope) SELECT @p, unnest(@s::text[]) ON CONFLICT DO NOTHING",
            ("p", id), ("s", profile.RegisteredScopes.ToArray()));
        if (profile.SecretHash is not null)
        {
            await ExecuteAsync(c, t, ct, "INSERT INTO client_secrets (profile_id, secret_hash, created_at) VALUES (@p, @h, @t)",
                ("p", id), ("h", profile.SecretHash), ("t", created));
        }
        await BumpProfileGenerationAsync(c, t, ct);
        return true;
    }, ct);

    public Task<bool> DeleteProfileAsync(string clientId, CancellationToken ct) => WriteAsync(async (c, t, _) =>
    {
        // ON DELETE CASCADE removes secrets, return URLs, scopes, codes, grants and refresh tokens;
        // access tokens die too, because tokeninfo requires their profile and grant to exist.
        int deleted = await ExecuteAsync(c, t, ct, "DELETE FROM profiles WHERE client_id = @c", ("c", clientId));
        if (deleted > 0)
        {
            await BumpProfileGenerationAsync(c, t, ct);
        }
        return deleted > 0;
    }, ct);

    public Task<bool> SetProfileRateLimitAsync(string clientId, int? perMinute, CancellationToken ct) => WriteAsync(async (c, t, _) =>
    {
        int updated = await ExecuteAsync(c, t, ct, "UPDATE profiles SET rate_limit_per_minute = @r WHERE client_id = @c",
            ("r", perMinute), ("c", clientId));
        if (updated > 0)
        {
            await BumpProfileGenerationAsync(c, t, ct);
        }
        return updated > 0;
    }, ct);

    public Task<bool> RotateClientSecretAsync(
        string clientId, byte[] newSecretHash, DateTimeOffset now, DateTimeOffset oldSecretsExpireAt, CancellationToken ct) =>
        WriteAsync(async (c, t, _) =>
        {
            // FOR UPDATE: two rotations of one profile take turns, so neither cuts the other's new secret short.
            var profileId = (long?)await ScalarAsync(c, t, ct, "SELECT id FROM profiles WHERE client_id = @c AND NOT is_public FOR UPDATE",
                ("c", clientId));
            if (profileId is null)
            {
                return false;
            }
            await ExecuteAsync(c, t, ct, "UPDATE client_secrets SET expires_at = @e WHERE profile_id = @p AND (expires_at IS NULL OR expires_at > @e)",
                ("e", oldSecretsExpireAt.ToUnixTimeMilliseconds()), ("p", profileId));
            await ExecuteAsync(c, t, ct, "INSERT INTO client_secrets (profile_id, secret_hash, created_at) VALUES (@p, @h, @t)",
                ("p", profileId), ("h", newSecretHash), ("t", now.ToUnixTimeMilliseconds()));
            await BumpProfileGenerationAsync(c, t, ct);
            return true;
        }, ct);

    /// <summary>
    /// The generation row changes with every profile write, and NOTIFY (delivered by PostgreSQL only when this
    /// transaction commits, never for a rolled-back one) tells listening nodes to look at it now.
    /// </summary>
    private static Task<int> BumpProfileGenerationAsync(NpgsqlConnection c, NpgsqlTransaction t, CancellationToken ct) =>
        ExecuteAsync(c, t, ct, $"UPDATE meta SET value = value + 1 WHERE key = 'profile_generation'; NOTIFY {ProfileChannel}");

    // ---- Profile change notifications (LISTEN/NOTIFY) ----

    public async Task WaitForProfileChangeAsync(TimeSpan maxWait, CancellationToken ct)
    {
        EnsureListening();
        var signal = Volatile.Read(ref _profileChanged);
        try
        {
            await signal.Task.WaitAsync(maxWait, ct);
        }
        catch (TimeoutException)
        {
            return;
        }
        // Auto-reset: the signal stays set until a waiter consumes it, so a NOTIFY that arrives between two
        // waits is not lost; it makes the next wait return at once.
        Interlocked.CompareExchange(ref _profileChanged, NewSignal(), signal);
    }

    private void EnsureListening()
    {
        lock (_listenerGate)
        {
            _listener ??= Task.Run(() => ListenAsync(_disposing.Token));
        }
    }

    /// <summary>
    /// Holds one connection that LISTENs for profile changes. NOTIFY is a best-effort fast path: notifications sent
    /// while this connection is down are lost, which is why the profile cache still polls the generation row and why
    /// every (re)connection signals a change once.
    /// </summary>
    private async Task ListenAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await using var connection = await _dataSource.OpenConnectionAsync(stop);
                connection.Notification += (_, _) => Volatile.Read(ref _profileChanged).TrySetResult();
                await ExecuteAsync(connection, null, stop, $"LISTEN {ProfileChannel}");
                Volatile.Read(ref _profileChanged).TrySetResult();
                while (true)
                {
                    await connection.WaitAsync(stop);
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is NpgsqlException or IOException or TimeoutException)
            {
                // The database is unreachable; the cache's poll notices changes meanwhile. Reconnect shortly.
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), stop);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    // ---- Users ----

    public Task<bool> CreateUserAsync(NewUser user, CancellationToken ct) => WriteAsync(async (c, t, _) =>
        await ScalarAsync(c, t, ct, """
            INSERT INTO users (user_id, email, name, password_hash, created_at) VALUES (@u, @e, @n, @h, @t)
            ON CONFLICT DO NOTHING RETURNING id
            """, ("u", user.UserId), ("e", user.Email), ("n", user.Name), ("h", user.PasswordHash),
            ("t", user.CreatedAt.ToUnixTimeMilliseconds())) is not null, ct);

    public Task<User?> FindUserByEmailAsync(string email, CancellationToken ct) =>
        FindUserAsync("lower(email) = lower(@v)", email, ct);

    public Task<User?> FindUserByUserIdAsync(string userId, CancellationToken ct) =>
        FindUserAsync("user_id = @v", userId, ct);

    private Task<User?> FindUserAsync(string condition, string value, CancellationToken ct) => ReadAsync(async c =>
    {
        await using var command = Sql(c, null, $"SELECT id, user_id, email, name, password_hash FROM users WHERE {condition}", ("v", value));
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct)
            ? new User(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4))
            : null;
    }, ct);

    // ---- Codes ----

    public Task InsertCodeAsync(NewCode code, CancellationToken ct) => WriteAsync(async (c, t, _) =>
        // ON CONFLICT: the hash is of 256 random bits, so a conflict can only be our own retried insert.
        await ExecuteAsync(c, t, ct, """
            INSERT INTO authorization_codes
                (code_hash, profile_id, user_id, redirect_uri, scope, code_challenge, code_challenge_method, created_at, expires_at)
            VALUES (@h, @p, @u, @r, @s, @c, @m, @t, @e) ON CONFLICT DO NOTHING
            """, ("h", code.CodeHash), ("p", code.ProfileRowId), ("u", code.UserRowId), ("r", code.RedirectUri), ("s", code.Scope),
            ("c", code.CodeChallenge), ("m", code.CodeChallengeMethod), ("t", code.CreatedAt.ToUnixTimeMilliseconds()),
            ("e", code.ExpiresAt.ToUnixTimeMilliseconds())), ct);

    private static async Task<AuthorizationCode?> ReadCodeAsync(NpgsqlConnection c, byte[] codeHash, CancellationToken ct)
    {
        await using var command = Sql(c, null, $"""
            SELECT {CodeColumns}
            FROM authorization_codes c JOIN users u ON u.id = c.user_id
            WHERE c.code_hash = @h
            """, ("h", codeHash));
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? ReadCode(reader, first: 0) : null;
    }

    private const string CodeColumns = """
        c.profile_id, u.user_id, c.redirect_uri, c.scope, c.code_challenge, c.code_challenge_method, c.expires_at, c.redeemed_at IS NOT NULL
        """;

    private static AuthorizationCode ReadCode(NpgsqlDataReader reader, int first) => new(
        reader.GetInt64(first), reader.GetString(first + 1), reader.GetString(first + 2), reader.GetString(first + 3),
        reader.IsDBNull(first + 4) ? null : reader.GetString(first + 4), reader.IsDBNull(first + 5) ? null : reader.GetString(first + 5),
        DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(first + 6)), reader.GetBoolean(first + 7));

    public Task<CodeRedemption> RedeemCodeAsync(
        byte[] codeHash, byte[] refreshTokenHash, long profileRowId, RedemptionTerms terms, CancellationToken ct) =>
        _gate.RunAsync(codeHash, async () =>
        {
            // The common case in one round trip: the code is claimed only if it is this client's, unredeemed and meets the
            // terms, all checked inside the statement that claims it (RedeemFreshCodesAsync), which also returns the code
            // as it was, so that a request it did not claim for learns why without a second trip. A malformed verifier
            // meets no terms, and a batch that failed answers nothing: those requests read the code on their own.
            AuthorizationCode? code;
            bool mayHaveCommitted = false;
            var batched = terms.VerifierWellFormed
                ? await _redemptions.RunAsync(new FreshRedemption(codeHash, refreshTokenHash, profileRowId, terms))
                : default;
            if (batched.Result is { } claim)
            {
                if (claim.GrantId is long grantId)
                {
                    return new CodeRedemption(CodeRedemptionOutcome.Redeemed, grantId, claim.Code);
                }
                code = claim.Code;
            }
            else
            {
                mayHaveCommitted = MayHaveCommitted(batched);
                code = await ReadAsync(c => ReadCodeAsync(c, codeHash, ct), ct);
            }
            // Not claimed: unknown or another client's, refused by the terms, redeemed already (a replay), locked by a
            // racing redemption when the batch skipped it, or the batch's fate unknown. What the terms check never changes
            // once a code exists; whether it is still unredeemed can, and the general path re-checks that under the row lock.
            if (code is null || code.ProfileRowId != profileRowId)
            {
                return new CodeRedemption(CodeRedemptionOutcome.Unknown, 0, null);
            }
            if (!code.Redeemed && !terms.Admits(code))
            {
                return new CodeRedemption(CodeRedemptionOutcome.Refused, 0, code);
            }
            var outcome = await RedeemCodeCoreAsync(codeHash, refreshTokenHash, terms.Now, mayHaveCommitted, ct);
            return outcome with { Code = outcome.Outcome == CodeRedemptionOutcome.Unknown ? null : code };
        }, ct);

    /// <summary>
    /// For a request its batch did not decide: whether that batch may have committed its write anyway. Only an error
    /// PostgreSQL answered proves it rolled back; a dropped connection or a timeout leaves it unknown, and the general
    /// path then looks for the request's own result first. A request that went alone and waited out <c>lock_timeout</c>
    /// (or a statement timeout) is answered with that failure instead (503 with Retry-After, as before batching): the
    /// general path would wait as long again for the same answer. In a batch of several the failure may be another
    /// item's, and each request decides alone.
    /// </summary>
    private static bool MayHaveCommitted<T>(Batched<T> batched)
        where T : class
    {
        if (batched is { Alone: true, Failure: PostgresException { SqlState: "55P03" or "57014" } timedOut })
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(timedOut);
        }
        return batched.Failure is not null and not PostgresException;
    }

    internal readonly record struct FreshRedemption(byte[] CodeHash, byte[] RefreshTokenHash, long ProfileRowId, RedemptionTerms Terms);

    /// <summary>
    /// What a claim found: the code as it was before the statement (null: there is none), and the grant it started if
    /// the statement claimed it (null: it did not).
    /// </summary>
    internal sealed record CodeClaim(AuthorizationCode? Code, long? GrantId)
    {
        public static readonly CodeClaim NoSuchCode = new(null, null);
    }

    /// <summary>
    /// <see cref="RedemptionTerms.Check"/> in SQL, over the code <c>c</c> and the request <c>i</c> (profile_id, at,
    /// redirect_uri, verifier, s256): true exactly when the check answers None for this client. Equalities are exact
    /// (deterministic collation, as C#'s ordinal comparison). A method other than plain is S256, as in
    /// <see cref="Crypto.Secrets.VerifiesPkce"/>. A request with a malformed verifier never comes here (it meets no terms).
    /// </summary>
    private const string MeetsTerms = """
        c.profile_id = i.profile_id AND c.expires_at > i.at AND c.redirect_uri = i.redirect_uri
        AND CASE WHEN c.code_challenge IS NULL THEN i.verifier IS NULL
                 WHEN coalesce(c.code_challenge_method, 'plain') = 'plain' THEN c.code_challenge = i.verifier
                 ELSE c.code_challenge = i.s256 END
        """;

    /// <summary>What a claim needs of the code to start its grant.</summary>
    private const string ClaimedColumns = "c.grant_id, c.profile_id, c.user_id, c.scope";

    /// <summary>
    /// The common case for a whole batch in one statement and one round trip (see <see cref="RotateLiveTokensAsync"/>
    /// for why, and for <c>SKIP LOCKED</c>): each unredeemed code that is its request's client's and meets its terms
    /// (<see cref="MeetsTerms"/>) is claimed, its grant created (the id drawn first, so the code can point at it in the
    /// same UPDATE) and the first refresh token inserted, atomically. Any other code, or one that is locked, changes
    /// nothing here. Every item comes back with its code as the statement found it (its snapshot is taken before the
    /// claims), so the caller tells unknown from refused without another trip; only a replay, a locked code or a
    /// failed batch goes on to the general path, which revokes a replayed code's grant or waits its turn on a racing
    /// redemption's row lock.
    /// </summary>
    internal async Task<CodeClaim?[]> RedeemFreshCodesAsync(FreshRedemption[] batch, CancellationToken ct)
    {
        var codes = new byte[batch.Length][];
        var tokens = new byte[batch.Length][];
        var times = new long[batch.Length];
        var profiles = new long[batch.Length];
        var redirectUris = new string[batch.Length];
        var verifiers = new string?[batch.Length];
        var challenges = new string?[batch.Length];
        for (int i = 0; i < batch.Length; i++)
        {
            var (code, token, profile, terms) = batch[i];
            (codes[i], tokens[i], times[i], profiles[i]) = (code, token, terms.Now.ToUnixTimeMilliseconds(), profile);
            (redirectUris[i], verifiers[i], challenges[i]) = (terms.RedirectUri, terms.CodeVerifier, terms.VerifierS256);
        }
        await using var connection = await _dataSource.OpenConnectionAsync(ct);
        // Foreign keys are checked at the end of the statement, when the grant rows the codes and tokens point at exist.
        await using var command = Sql(connection, null, $"""
            WITH i AS (
                SELECT * FROM unnest(@h::bytea[], @r::bytea[], @t::bigint[], @p::bigint[], @u::text[], @v::text[], @s::text[])
                    WITH ORDINALITY AS i(code_hash, refresh, at, profile_id, redirect_uri, verifier, s256, n)),
            unredeemed AS MATERIALIZED (
                SELECT code_hash FROM authorization_codes
                WHERE code_hash = ANY(@h::bytea[]) AND redeemed_at IS NULL
                FOR UPDATE SKIP LOCKED),
            claimed AS (
                UPDATE authorization_codes c SET redeemed_at = i.at, grant_id = nextval(pg_get_serial_sequence('grants', 'id'))
                FROM unredeemed u, i
                WHERE c.code_hash = u.code_hash AND i.code_hash = c.code_hash AND c.redeemed_at IS NULL AND {MeetsTerms}
                RETURNING i.n, i.refresh, i.at, {ClaimedColumns}),
            created AS (
                INSERT INTO grants (id, profile_id, user_id, scope, created_at)
                SELECT grant_id, profile_id, user_id, scope, at FROM claimed),
            issued AS (
                INSERT INTO refresh_tokens (token_hash, grant_id, created_at)
                SELECT refresh, grant_id, at FROM claimed)
            SELECT i.n, cl.grant_id, {CodeColumns}
            FROM i JOIN authorization_codes c ON c.code_hash = i.code_hash JOIN users u ON u.id = c.user_id
            LEFT JOIN claimed cl ON cl.n = i.n
            """, ("h", codes), ("r", tokens), ("t", times), ("p", profiles), ("u", redirectUris), ("v", verifiers), ("s", challenges));
        await using var reader = await command.ExecuteReaderAsync(ct);
        var results = new CodeClaim?[batch.Length];
        Array.Fill(results, CodeClaim.NoSuchCode);
        while (await reader.ReadAsync(ct))
        {
            results[checked((int)reader.GetInt64(0)) - 1] = ReadClaim(reader, first: 1);
        }
        return results;
    }

    /// <summary>A batch of one, as one row: see <see cref="RotateLiveTokenAsync"/> for why.</summary>
    internal async Task<CodeClaim?> RedeemFreshCodeAsync(FreshRedemption redemption, CancellationToken ct)
    {
        var (codeHash, refreshTokenHash, profileRowId, terms) = redemption;
        await using var connection = await _dataSource.OpenConnectionAsync(ct);
        // Foreign keys are checked at the end of the statement, when the grant row the code points at exists.
        await using var command = Sql(connection, null, $"""
            WITH claimed AS (
                UPDATE authorization_codes c
                SET redeemed_at = i.at, grant_id = nextval(pg_get_serial_sequence('grants', 'id'))
                FROM (VALUES (@p::bigint, @t::bigint, @u::text, @v::text, @s::text)) AS i(profile_id, at, redirect_uri, verifier, s256)
                WHERE c.code_hash = @h AND c.redeemed_at IS NULL AND {MeetsTerms}
                RETURNING i.at, {ClaimedColumns}),
            created AS (
                INSERT INTO grants (id, profile_id, user_id, scope, created_at)
                SELECT grant_id, profile_id, user_id, scope, at FROM claimed),
            issued AS (
                INSERT INTO refresh_tokens (token_hash, grant_id, created_at)
                SELECT @r, grant_id, at FROM claimed)
            SELECT cl.grant_id, {CodeColumns}
            FROM authorization_codes c JOIN users u ON u.id = c.user_id LEFT JOIN claimed cl ON true
            WHERE c.code_hash = @h
            """, ("h", codeHash), ("r", refreshTokenHash), ("p", profileRowId), ("t", terms.Now.ToUnixTimeMilliseconds()),
            ("u", terms.RedirectUri), ("v", terms.CodeVerifier), ("s", terms.VerifierS256));
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? ReadClaim(reader, first: 0) : CodeClaim.NoSuchCode;
    }

    /// <summary>The grant id (null where the statement did not claim), then <see cref="CodeColumns"/>.</summary>
    private static CodeClaim ReadClaim(NpgsqlDataReader reader, int first) =>
        new(ReadCode(reader, first + 1), reader.IsDBNull(first) ? null : reader.GetInt64(first));

    private Task<CodeRedemption> RedeemCodeCoreAsync(
        byte[] codeHash, byte[] refreshTokenHash, DateTimeOffset now, bool batchMayHaveCommitted, CancellationToken ct) =>
        WriteAsync(async (c, t, attempt) =>
        {
            long at = now.ToUnixTimeMilliseconds();
            // Claim the code. Racing redemptions (on any node) queue on this row's lock; when the winner commits,
            // PostgreSQL re-checks the WHERE clause against the committed row, so exactly one claim succeeds.
            long profileId, userId;
            string scope;
            await using (var claim = Sql(c, t, """
                UPDATE authorization_codes SET redeemed_at = @t WHERE code_hash = @h AND redeemed_at IS NULL
                RETURNING profile_id, user_id, scope
                """, ("t", at), ("h", codeHash)))
            await using (var reader = await claim.ExecuteReaderAsync(ct))
            {
                if (!await reader.ReadAsync(ct))
                {
                    profileId = 0;
                    userId = 0;
                    scope = "";
                }
                else
                {
                    profileId = reader.GetInt64(0);
                    userId = reader.GetInt64(1);
                    scope = reader.GetString(2);
                }
            }

            if (profileId == 0)
            {
                var grant = await ScalarAsync(c, t, ct, "SELECT coalesce(grant_id, 0) FROM authorization_codes WHERE code_hash = @h", ("h", codeHash));
                if (grant is not long replayedGrant)
                {
                    return new CodeRedemption(CodeRedemptionOutcome.Unknown, 0, null);
                }
                // Our own earlier attempt (or the batch) may have committed before the connection dropped: its refresh token is ours.
                if ((attempt > 1 || batchMayHaveCommitted) && await ScalarAsync(c, t, ct, "SELECT 1 FROM refresh_tokens WHERE token_hash = @r AND grant_id = @g",
                    ("r", refreshTokenHash), ("g", replayedGrant)) is not null)
                {
                    return new CodeRedemption(CodeRedemptionOutcome.Redeemed, replayedGrant, null);
                }
                await RevokeGrantAsync(c, t, replayedGrant, at, "authorization code replayed", ct);
                return new CodeRedemption(CodeRedemptionOutcome.Replayed, replayedGrant, null);
            }

            long grantId = (long)(await ScalarAsync(c, t, ct,
                "INSERT INTO grants (profile_id, user_id, scope, created_at) VALUES (@p, @u, @s, @t) RETURNING id",
                ("p", profileId), ("u", userId), ("s", scope), ("t", at)))!;
            await InsertRefreshTokenAsync(c, t, refreshTokenHash, grantId, at, ct);
            await ExecuteAsync(c, t, ct, "UPDATE authorization_codes SET grant_id = @g WHERE code_hash = @h", ("g", grantId), ("h", codeHash));
            return new CodeRedemption(CodeRedemptionOutcome.Redeemed, grantId, null);
        }, ct);

    // ---- Refresh tokens and grants ----

    public Task<RefreshToken?> FindRefreshTokenAsync(byte[] tokenHash, CancellationToken ct) => ReadAsync(async c =>
        await ReadRefreshTokenAsync(c, null, tokenHash, lockRow: false, ct), ct);

    private static async Task<RefreshToken?> ReadRefreshTokenAsync(
        NpgsqlConnection c, NpgsqlTransaction? t, byte[] tokenHash, bool lockRow, CancellationToken ct)
    {
        // Locking the presented token's row (not the family's) makes concurrent uses of one token take turns, each
        // seeing the previous one's committed consumed_at; uses of different tokens never wait on each other.
        await using var command = Sql(c, t, lockRow ? ReadRefreshTokenSql + " FOR UPDATE OF t" : ReadRefreshTokenSql, ("h", tokenHash));
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct)
            ? new RefreshToken(
                reader.GetInt64(0), reader.GetInt64(1), reader.GetString(2), reader.GetString(3),
                reader.IsDBNull(4) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4)),
                reader.GetBoolean(5))
            : null;
    }

    private const string ReadRefreshTokenSql = """
        SELECT g.id, g.profile_id, u.user_id, g.scope, t.consumed_at, g.revoked_at IS NOT NULL
        FROM refresh_tokens t
        JOIN grants g ON g.id = t.grant_id
        JOIN users u ON u.id = g.user_id
        WHERE t.token_hash = @h
        """;

    public Task<Rotation> RotateRefreshTokenAsync(
        byte[] presentedHash, byte[] successorHash, long profileRowId, DateTimeOffset now, TimeSpan graceWindow, CancellationToken ct) =>
        _gate.RunAsync(presentedHash, async () =>
        {
            var batched = await _rotations.RunAsync(new LiveRotation(presentedHash, successorHash, profileRowId, now.ToUnixTimeMilliseconds()));
            if (batched.Result is { } rotated)
            {
                return new Rotation(RotationOutcome.Rotated, rotated);
            }
            // Not live, skipped, or the batch failed: the general path decides, looking for our successor first if the batch may have committed.
            return await RotateRefreshTokenCoreAsync(presentedHash, successorHash, profileRowId, now, graceWindow, MayHaveCommitted(batched), ct);
        }, ct);

    /// <summary>One request's rotation of a live token: what <see cref="RotateLiveTokensAsync"/> needs of it.</summary>
    internal readonly record struct LiveRotation(byte[] Presented, byte[] Successor, long ProfileRowId, long At);

    /// <summary>
    /// The common case for a whole batch in one statement and one round trip: each presented token that is live, its
    /// grant active and its client the caller, is consumed and its successor inserted, atomically (a single statement
    /// is its own transaction). Anything else (unknown, another client's, consumed, revoked, or locked by a request
    /// in flight elsewhere) changes nothing here and comes back null, and the general path decides for that request.
    /// </summary>
    /// <remarks>
    /// Why one statement: the general path takes five round trips (BEGIN and the row lock, UPDATE, INSERT, COMMIT), and
    /// on a busy machine each one is a context switch to a PostgreSQL backend and back; a batch makes that one trip and
    /// one WAL flush for all of its requests (<see cref="PostgresGroupCommit{TItem, TResult}"/>).
    /// <c>SKIP LOCKED</c>: a token whose row another transaction holds (the same token presented on another node this
    /// instant) is left to the general path, which waits for that lock and then sees the other's committed result, as
    /// before; so a batch of several never waits on a row lock, and two nodes' batches cannot deadlock. Rows still live
    /// once locked stay so: every writer of <c>consumed_at</c> holds the row lock. A batch of one takes
    /// <see cref="RotateLiveTokenAsync"/>.
    /// </remarks>
    internal async Task<RefreshToken?[]> RotateLiveTokensAsync(LiveRotation[] batch, CancellationToken ct)
    {
        var presented = new byte[batch.Length][];
        var successors = new byte[batch.Length][];
        var profiles = new long[batch.Length];
        var times = new long[batch.Length];
        for (int i = 0; i < batch.Length; i++)
        {
            (presented[i], successors[i], profiles[i], times[i]) = batch[i];
        }
        await using var connection = await _dataSource.OpenConnectionAsync(ct);
        // A data-modifying WITH runs to completion whether or not the final SELECT reads it (PostgreSQL docs, 7.8.4).
        await using var command = Sql(connection, null, """
            WITH input AS (
                SELECT * FROM unnest(@h::bytea[], @s::bytea[], @p::bigint[], @t::bigint[])
                    WITH ORDINALITY AS i(presented, successor, profile_id, at, n)),
            live AS MATERIALIZED (
                SELECT token_hash FROM refresh_tokens
                WHERE token_hash = ANY(@h::bytea[]) AND consumed_at IS NULL
                FOR UPDATE SKIP LOCKED),
            consumed AS (
                UPDATE refresh_tokens t SET consumed_at = i.at
                FROM live l, input i, grants g
                WHERE t.token_hash = l.token_hash AND i.presented = t.token_hash AND t.consumed_at IS NULL
                  AND g.id = t.grant_id AND g.revoked_at IS NULL AND g.profile_id = i.profile_id
                RETURNING i.n, i.successor, i.at, t.grant_id, g.user_id, g.scope),
            successor AS (
                INSERT INTO refresh_tokens (token_hash, grant_id, created_at)
                SELECT successor, grant_id, at FROM consumed)
            SELECT c.n, c.grant_id, u.user_id, c.scope FROM consumed c JOIN users u ON u.id = c.user_id
            """, ("h", presented), ("s", successors), ("p", profiles), ("t", times));
        await using var reader = await command.ExecuteReaderAsync(ct);
        var results = new RefreshToken?[batch.Length];
        while (await reader.ReadAsync(ct))
        {
            int i = checked((int)reader.GetInt64(0)) - 1;
            results[i] = new RefreshToken(reader.GetInt64(1), batch[i].ProfileRowId, reader.GetString(2), reader.GetString(3), ConsumedAt: null, GrantRevoked: false);
        }
        return results;
    }

    /// <summary>
    /// A batch of one, which is what a quiet node sends: the same rotation as one row, without the arrays and without
    /// the row lock taken before the UPDATE. Measured at 4 connections (one node, alternated runs), the batch form
    /// cost a rotation about a third of its throughput, and this form gives it back. It may wait for a row another
    /// transaction holds, as every rotation did before batching; it then holds one of the batch slots, and the other
    /// keeps batching.
    /// </summary>
    private async Task<RefreshToken?> RotateLiveTokenAsync(LiveRotation rotation, CancellationToken ct)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(ct);
        await using var command = Sql(connection, null, """
            WITH consumed AS (
                UPDATE refresh_tokens t SET consumed_at = @t
                FROM grants g
                WHERE t.token_hash = @h AND t.consumed_at IS NULL
                  AND g.id = t.grant_id AND g.revoked_at IS NULL AND g.profile_id = @p
                RETURNING t.grant_id, g.user_id, g.scope),
            successor AS (
                INSERT INTO refresh_tokens (token_hash, grant_id, created_at)
                SELECT @s, grant_id, @t FROM consumed)
            SELECT c.grant_id, u.user_id, c.scope FROM consumed c JOIN users u ON u.id = c.user_id
            """, ("t", rotation.At), ("h", rotation.Presented), ("p", rotation.ProfileRowId), ("s", rotation.Successor));
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct)
            ? new RefreshToken(reader.GetInt64(0), rotation.ProfileRowId, reader.GetString(1), reader.GetString(2), ConsumedAt: null, GrantRevoked: false)
            : null;
    }

    private Task<Rotation> RotateRefreshTokenCoreAsync(
        byte[] presentedHash, byte[] successorHash, long profileRowId, DateTimeOffset now, TimeSpan graceWindow,
        bool batchMayHaveCommitted, CancellationToken ct) =>
        WriteAsync(async (c, t, attempt) =>
        {
            long at = now.ToUnixTimeMilliseconds();
            var token = await ReadRefreshTokenAsync(c, t, presentedHash, lockRow: true, ct);
            var decision = RotationRule.Decide(token, profileRowId, now, graceWindow);
            // Our own earlier attempt (or the batch) may have committed before the connection dropped: the successor is ours.
            if ((decision is RotationOutcome.ReplayedWithinGrace or RotationOutcome.ReuseDetected) && (attempt > 1 || batchMayHaveCommitted)
                && await ScalarAsync(c, t, ct, "SELECT 1 FROM refresh_tokens WHERE token_hash = @s", ("s", successorHash)) is not null)
            {
                return new Rotation(RotationOutcome.Rotated, token);
            }
            switch (decision)
            {
                case RotationOutcome.Unknown:
                    return new Rotation(decision, null);
                case RotationOutcome.Rotated:
                    await ExecuteAsync(c, t, ct, "UPDATE refresh_tokens SET consumed_at = @t WHERE token_hash = @h", ("t", at), ("h", presentedHash));
                    await InsertRefreshTokenAsync(c, t, successorHash, token!.GrantId, at, ct);
                    break;
                case RotationOutcome.ReplayedWithinGrace:
                    // Perhaps through another node.
                    await InsertRefreshTokenAsync(c, t, successorHash, token!.GrantId, at, ct);
                    break;
                case RotationOutcome.ReuseDetected:
                    await RevokeGrantAsync(c, t, token!.GrantId, at, RotationRule.ReuseRevocationReason, ct);
                    break;
            }
            return new Rotation(decision, token);
        }, ct);

    public Task<bool> IsGrantActiveAsync(long grantId, CancellationToken ct) => ReadAsync(async c =>
        await ScalarAsync(c, null, ct, "SELECT 1 FROM grants WHERE id = @g AND revoked_at IS NULL", ("g", grantId)) is not null, ct);

    private static Task<int> InsertRefreshTokenAsync(NpgsqlConnection c, NpgsqlTransaction t, byte[] tokenHash, long grantId, long at, CancellationToken ct) =>
        ExecuteAsync(c, t, ct, "INSERT INTO refresh_tokens (token_hash, grant_id, created_at) VALUES (@h, @g, @t)",
            ("h", tokenHash), ("g", grantId), ("t", at));

    private static async Task<int> RevokeGrantAsync(NpgsqlConnection c, NpgsqlTransaction t, long grantId, long at, string reason, CancellationToken ct)
    {
        int revoked = await ExecuteAsync(c, t, ct, "UPDATE grants SET revoked_at = @t, revoked_reason = @r WHERE id = @g AND revoked_at IS NULL",
            ("t", at), ("r", reason), ("g", grantId));
        if (revoked > 0)
        {
            // Every node caches which grants are active and which reuse-policy refresh tokens are live (ProfileCache);
            // the generation and its NOTIFY tell them all to forget.
            await BumpProfileGenerationAsync(c, t, ct);
        }
        return revoked;
    }

    // ---- Housekeeping ----

    public async Task<PruneResult> PruneAsync(PrunePolicy policy, Action<PruneResult>? progress, CancellationToken ct)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(ct);
        // A session-level advisory lock for the whole run: one node prunes, the others skip this round.
        if (!(bool)(await ScalarAsync(connection, null, ct, "SELECT pg_try_advisory_lock(@k)", ("k", PruneLockKey)))!)
        {
            return PruneResult.SkippedRun;
        }
        try
        {
            var total = PruneResult.None;
            long cutoff = policy.CutoffMilliseconds;
            while (true)
            {
                var (codes, tokens, grants) = await PruneBatchAsync(connection, cutoff, policy.BatchSize, ct);
                total = total.Add(codes, tokens, grants);
                progress?.Invoke(total);
                if (codes < policy.BatchSize && tokens < policy.BatchSize && grants < policy.BatchSize)
                {
                    return total;
                }
            }
        }
        finally
        {
            if (connection.State == ConnectionState.Open)
            {
                await ExecuteAsync(connection, null, CancellationToken.None, "SELECT pg_advisory_unlock(@k)", ("k", PruneLockKey));
            }
        }
    }

    /// <summary>
    /// One short transaction per batch. SKIP LOCKED: a row a token request holds right now is left for the next
    /// run, so the prune never waits on the token endpoint, and the endpoint waits at most one small batch.
    /// </summary>
    private static async Task<(int Codes, int Tokens, int Grants)> PruneBatchAsync(NpgsqlConnection c, long cutoff, int batchSize, CancellationToken ct)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                await using var t = await c.BeginTransactionAsync(IsolationLevel.ReadCommitted, ct);
                int codes = await ExecuteAsync(c, t, ct, """
                    DELETE FROM authorization_codes WHERE code_hash IN
                        (SELECT code_hash FROM authorization_codes WHERE expires_at < @cut LIMIT @n FOR UPDATE SKIP LOCKED)
                    """, ("cut", cutoff), ("n", batchSize));
                int tokens = await ExecuteAsync(c, t, ct, """
                    DELETE FROM refresh_tokens WHERE token_hash IN
                        (SELECT token_hash FROM refresh_tokens WHERE consumed_at < @cut LIMIT @n FOR UPDATE SKIP LOCKED)
                    """, ("cut", cutoff), ("n", batchSize));
                // Deleting a grant cascades to its remaining refresh tokens and the code it came from.
                int grants = await ExecuteAsync(c, t, ct, """
                    DELETE FROM grants WHERE id IN
                        (SELECT id FROM grants WHERE revoked_at < @cut LIMIT @n FOR UPDATE SKIP LOCKED)
                    """, ("cut", cutoff), ("n", batchSize));
                await t.CommitAsync(ct);
                return (codes, tokens, grants);
            }
            catch (PostgresException e) when (attempt < PostgresRetry.MaxAttempts && PostgresRetry.IsTransient(e))
            {
                await Task.Delay(PostgresRetry.Backoff(attempt), ct);
            }
        }
    }

    // ---- Keys ----

    public Task<AccessTokenKeys> GetOrCreateAccessTokenKeysAsync(byte[] candidateKey, DateTimeOffset now, CancellationToken ct) =>
        WriteAsync(async (c, t, _) =>
        {
            // Nodes starting at once take turns here, so they all agree on one first key.
            await ExecuteAsync(c, t, ct, "SELECT pg_advisory_xact_lock(@k)", ("k", KeysLockKey));
            await ExecuteAsync(c, t, ct, """
                INSERT INTO access_token_keys (material, created_at)
                SELECT @m, @t WHERE NOT EXISTS (SELECT 1 FROM access_token_keys)
                """, ("m", candidateKey), ("t", now.ToUnixTimeMilliseconds()));
            var keys = new Dictionary<int, byte[]>();
            int current = 0;
            await using var command = Sql(c, t, "SELECT id, material FROM access_token_keys ORDER BY id");
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                current = reader.GetInt32(0);
                keys[current] = reader.GetFieldValue<byte[]>(1);
            }
            return new AccessTokenKeys(keys, current);
        }, ct);

    public Task<IReadOnlyList<StoredAccessTokenKey>> ListAccessTokenKeysAsync(CancellationToken ct) => ReadAsync(async c =>
    {
        var keys = new List<StoredAccessTokenKey>();
        await using var command = Sql(c, null,
            "SELECT id, material, protection, created_at, COALESCE(activates_at, created_at) FROM access_token_keys ORDER BY id");
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            keys.Add(new StoredAccessTokenKey(
                reader.GetInt32(0), reader.GetFieldValue<byte[]>(1), reader.IsDBNull(2) ? null : reader.GetString(2),
                DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(3)), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4))));
        }
        return (IReadOnlyList<StoredAccessTokenKey>)keys;
    }, ct);

    public Task<bool> AddAccessTokenKeyAsync(StoredAccessTokenKey key, DateTimeOffset unlessCreatedAfter, CancellationToken ct) =>
        WriteAsync(async (c, t, _) =>
        {
            // Nodes that find rotation due at once take turns, so the condition below sees the other's key.
            await ExecuteAsync(c, t, ct, "SELECT pg_advisory_xact_lock(@k)", ("k", KeysLockKey));
            return await ExecuteAsync(c, t, ct, """
                INSERT INTO access_token_keys (material, protection, created_at, activates_at)
                SELECT @m, @p, @c, @a WHERE NOT EXISTS (SELECT 1 FROM access_token_keys WHERE created_at > @after)
                """, ("m", key.Material), ("p", key.Protection), ("c", key.CreatedAt.ToUnixTimeMilliseconds()),
                ("a", key.ActivatesAt.ToUnixTimeMilliseconds()), ("after", unlessCreatedAfter.ToUnixTimeMilliseconds())) > 0;
        }, ct);

    public Task<bool> ReplaceAccessTokenKeyMaterialAsync(int id, byte[] material, string? protection, string? expectedProtection, CancellationToken ct) =>
        WriteAsync(async (c, t, _) => await ExecuteAsync(c, t, ct,
            "UPDATE access_token_keys SET material = @m, protection = @p WHERE id = @id AND protection IS NOT DISTINCT FROM @expected",
            ("m", material), ("p", protection), ("id", id), ("expected", expectedProtection)) > 0, ct);

    public Task<int> DeleteAccessTokenKeysAsync(IReadOnlyList<int> ids, CancellationToken ct) =>
        WriteAsync(async (c, t, _) => await ExecuteAsync(c, t, ct, "DELETE FROM access_token_keys WHERE id = ANY(@ids)", ("ids", ids.ToArray())), ct);

    // ---- Audit trail ----

    public Task AppendAuditEventsAsync(IReadOnlyList<AuditEvent> events, CancellationToken ct) => WriteAsync(async (c, t, _) =>
    {
        await using var batch = new NpgsqlBatch(c, t);
        foreach (var e in events)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand("""
                INSERT INTO audit_events (at, event, client_id, user_id, ip, request_id, detail) VALUES (@at, @event, @client, @user, @ip, @request, @detail)
                """)
            {
                Parameters =
                {
                    new("at", e.At.ToUnixTimeMilliseconds()), new("event", e.Event), new("client", (object?)e.ClientId ?? DBNull.Value),
                    new("user", (object?)e.UserId ?? DBNull.Value), new("ip", (object?)e.Ip ?? DBNull.Value),
                    new("request", (object?)e.RequestId ?? DBNull.Value), new("detail", (object?)e.Detail ?? DBNull.Value),
                },
            });
        }
        return events.Count == 0 ? 0 : await batch.ExecuteNonQueryAsync(ct);
    }, ct);

    public Task<IReadOnlyList<AuditRecord>> ListAuditEventsAsync(AuditQuery query, CancellationToken ct) => ReadAsync(async c =>
    {
        var records = new List<AuditRecord>();
        await using var command = Sql(c, null, """
            SELECT id, at, event, client_id, user_id, ip, request_id, detail FROM audit_events
            WHERE (@since::bigint IS NULL OR at >= @since::bigint) AND (@client::text IS NULL OR client_id = @client::text)
              AND (@event::text IS NULL OR event = @event::text)
            ORDER BY at DESC, id DESC LIMIT @limit
            """, ("since", query.Since?.ToUnixTimeMilliseconds()), ("client", query.ClientId), ("event", query.Event), ("limit", query.Limit));
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            string? Text(int i) => reader.IsDBNull(i) ? null : reader.GetString(i);
            records.Add(new AuditRecord(reader.GetInt64(0), new AuditEvent(
                DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)), reader.GetString(2), Text(3), Text(4), Text(5), Text(6), Text(7))));
        }
        return (IReadOnlyList<AuditRecord>)records;
    }, ct);

    public async ValueTask DisposeAsync()
    {
        await _disposing.CancelAsync();
        Task? listener;
        lock (_listenerGate)
        {
            listener = _listener;
        }
        if (listener is not null)
        {
            await listener;
        }
        await _dataSource.DisposeAsync();
        _disposing.Dispose();
    }
}
