using System.Data.Common;
using System.Globalization;
using Microsoft.Data.Sqlite;
using Npgsql;
using Tollgate.Server.Crypto;
using Tollgate.Server.Storage;

namespace Tollgate.Benchmarks;

/// <summary>
/// Fills a database for bench/run.sh far faster than the API could: rows go in with plain SQL in one
/// transaction, hundreds per statement, refresh-token hashes sorted so the primary-key B-tree is appended to,
/// not split at random. The schema itself comes from the server's own migrations, so a seeded database is a
/// real Tollgate database. Both stores take the same SQL: every column it writes exists in both schemas, and
/// <c>@name</c> parameters are understood by Microsoft.Data.Sqlite and Npgsql alike.
/// </summary>
/// <remarks>
/// Bench-only. What it writes is what the server would have written (hashes only, same columns), but
/// without the API's checks, so it is never shipped in the tollgate CLI. One difference on SQLite: its grants
/// do not name their first refresh token (schema v7), so each seeded token is a chain root with an entry in
/// <c>refresh_tokens_roots</c>, as every token stored before v7 is; the lookups a request makes are the same.
/// </remarks>
internal static class Seeder
{
    public const string ReuseClientId = "amzn1.application-oa2-client.00000000000000000000000000be4c01";
    public const string RotateClientId = "amzn1.application-oa2-client.00000000000000000000000000be4c02";
    public const string BenchSecret = "c007c411c9657dde807a11a96a3cfd8a2972f9599ac28de241675832f63cac05";
    public const string ReturnUrl = "https://bench.example/cb";
    /// <summary>
    /// Registered on every seeded profile, with <c>profile</c> too: ../shared/bench/compare.sh asks client_credentials
    /// for scope=profile, and a scope must be registered on the profile to be granted that way.
    /// </summary>
    public const string Scope = "videocentral::reporting";

    /// <summary>Rows per INSERT: few enough parameters for either database, many enough to make round trips rare.</summary>
    private const int RowsPerStatement = 500;

    /// <summary>
    /// <c>seed --db LOCATION --out DIR [--chains N] [--profiles N] [--tokens N]</c>, LOCATION being
    /// <c>sqlite:PATH</c> (or a bare path) or <c>postgres:CONNECTION-STRING</c>: on a fresh database, creates the
    /// two bench clients (reuse and rotate policy) with N refresh-token chains each, written to DIR; then adds
    /// filler profiles and live refresh tokens (their values are thrown away; only their hashes are stored), and on
    /// PostgreSQL vacuums and analyzes the tables it grew, as a store in service would have been.
    /// Can run again on the same database, even while servers use it, to grow the store step by step.
    /// </summary>
    public static async Task<int> SeedAsync(string[] args)
    {
        string db = Location(Option(args, "--db") ?? throw new ArgumentException("--db LOCATION is required"));
        string outDir = Option(args, "--out") ?? throw new ArgumentException("--out DIR is required");
        int chains = int.Parse(Option(args, "--chains") ?? "256", CultureInfo.InvariantCulture);
        int profiles = int.Parse(Option(args, "--profiles") ?? "0", CultureInfo.InvariantCulture);
        int tokens = int.Parse(Option(args, "--tokens") ?? "0", CultureInfo.InvariantCulture);
        Directory.CreateDirectory(outDir);

        await using (var store = StoreLocation.TryOpen(db, out string? problem) ?? throw new ArgumentException(problem))
        {
            await store.MigrateAsync(CancellationToken.None);
        }
        var started = System.Diagnostics.Stopwatch.StartNew();
        await using var connection = await OpenAsync(db);
        await using var tx = await connection.BeginTransactionAsync();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        long user = EnsureUser(tx, now);

        if (ProfileRowId(tx, ReuseClientId) is null)
        {
            long reuse = InsertProfile(tx, ReuseClientId, "bench reuse", "reuse", BenchSecret, now);
            long rotate = InsertProfile(tx, RotateClientId, "bench rotate", "rotate", BenchSecret, now);
            var rows = new List<(byte[] Hash, long Grant)>();
            await File.WriteAllLinesAsync(Path.Combine(outDir, "reuse-tokens.txt"), Chains(tx, reuse, user, chains, now, rows));
            await File.WriteAllLinesAsync(Path.Combine(outDir, "rotate-tokens.txt"), Chains(tx, rotate, user, chains, now, rows));
            InsertTokens(tx, rows, now);
        }

        var filler = new List<long>();
        int existingFillers = Convert.ToInt32(Scalar(tx, "SELECT count(*) FROM profiles"), CultureInfo.InvariantCulture);
        for (int i = 0; i < profiles; i++)
        {
            string clientId = "amzn1.application-oa2-client." + Secrets.RandomHex(16);
            filler.Add(InsertProfile(tx, clientId, $"filler {existingFillers + i}", i % 2 == 0 ? "reuse" : "rotate", Secrets.NewClientSecret(), now));
        }
        if (filler.Count == 0)
        {
            using var all = Command(tx, "SELECT id FROM profiles");
            using var reader = all.ExecuteReader();
            while (reader.Read())
            {
                filler.Add(reader.GetInt64(0));
            }
        }

        if (tokens > 0)
        {
            // One grant per token, like a million users who each authorized one app once.
            var owners = new long[tokens];
            for (int i = 0; i < tokens; i++)
            {
                owners[i] = filler[i % filler.Count];
            }
            var grants = InsertGrants(tx, owners, user, now);
            // Keys as the server makes them (Secrets.StoreKey), issued over the past 30 days in order, as a store
            // that has been in service for a month holds them; nobody ever presents these tokens.
            var rows = new List<(byte[] Hash, long Grant)>(tokens);
            var issued = DateTimeOffset.FromUnixTimeMilliseconds(now) - TimeSpan.FromDays(30);
            var step = TimeSpan.FromDays(30) / tokens;
            for (int i = 0; i < grants.Count; i++)
            {
                rows.Add((Secrets.StoreKey(Secrets.NewRefreshToken(issued + step * i)), grants[i]));
            }
            InsertTokens(tx, rows, now);
        }
        // Servers reload their profile caches when the generation moves (within a second, by their poll).
        Execute(tx, "UPDATE meta SET value = value + 1 WHERE key = 'profile_generation'");
        await tx.CommitAsync();
        if (connection is NpgsqlConnection)
        {
            // A store of this size that has been in service has been vacuumed. Without this, the bulk load's aftermath
            // runs during the measurement: autovacuum and analyze over the new rows, and the hint bits each row's first
            // read writes. In a two-node run on two cores, client_credentials, which reads no store, fell 20% at the
            // 1M-token point, and reuse 28%.
            Execute(null, "VACUUM (ANALYZE) profiles, grants, refresh_tokens", connection);
        }

        long live = Convert.ToInt64(Scalar(null, "SELECT count(*) FROM refresh_tokens WHERE consumed_at IS NULL", connection), CultureInfo.InvariantCulture);
        long profileCount = Convert.ToInt64(Scalar(null, "SELECT count(*) FROM profiles", connection), CultureInfo.InvariantCulture);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"seeded: profiles={profileCount} live_refresh_tokens={live} in {started.Elapsed.TotalSeconds:F1} s"));
        return 0;
    }

    /// <summary><c>codes --db LOCATION --client-id ID --count N --out FILE</c>: N fresh authorization codes (5-minute lifetime, as the server mints them).</summary>
    public static async Task<int> CodesAsync(string[] args)
    {
        string db = Location(Option(args, "--db") ?? throw new ArgumentException("--db LOCATION is required"));
        string clientId = Option(args, "--client-id") ?? ReuseClientId;
        int count = int.Parse(Option(args, "--count") ?? "10000", CultureInfo.InvariantCulture);
        string outFile = Option(args, "--out") ?? throw new ArgumentException("--out FILE is required");
        await using var connection = await OpenAsync(db);
        await using var tx = await connection.BeginTransactionAsync();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        long user = EnsureUser(tx, now);
        long profile = ProfileRowId(tx, clientId) ?? throw new ArgumentException($"no profile {clientId}; run seed first");
        var codes = new string[count];
        for (int i = 0; i < count; i++)
        {
            codes[i] = Secrets.NewAuthorizationCode(DateTimeOffset.FromUnixTimeMilliseconds(now));
        }
        // A server mints codes one by one and each is redeemed seconds after it was issued, so redemptions walk the
        // codes table in key order, at its end. Codes minted in the same millisecond sort by their hash instead: hand
        // them out in key order, or every redemption would land on a random page, which no real load does.
        var keys = Array.ConvertAll(codes, code => Secrets.StoreKey(code));
        Array.Sort(keys, codes, Comparer<byte[]>.Create((a, b) => a.AsSpan().SequenceCompareTo(b)));
        InsertRows(tx, "INSERT INTO authorization_codes (code_hash, profile_id, user_id, redirect_uri, scope, created_at, expires_at) VALUES ",
            "(@h{0}, @p, @u, @r, 'profile', @t, @e)", codes, (command, i, code) => Add(command, $"@h{i}", Secrets.StoreKey(code)),
            command =>
            {
                Add(command, "@p", profile);
                Add(command, "@u", user);
                Add(command, "@r", ReturnUrl);
                Add(command, "@t", now);
                Add(command, "@e", now + 300_000);
            });
        await tx.CommitAsync();
        await File.WriteAllLinesAsync(outFile, codes);
        return 0;
    }

    /// <summary>
    /// <c>pg-create --server postgres:CONNECTION-STRING</c>: creates an empty database with a fresh random name on that
    /// server and prints its location, so a bench run never touches an existing database. <c>pg-drop --db LOCATION</c>
    /// drops it again (closing the connections still open to it).
    /// </summary>
    public static async Task<int> PostgresDatabaseAsync(string command, string[] args)
    {
        string location = Option(args, command == "pg-create" ? "--server" : "--db") ?? throw new ArgumentException("a postgres: location is required");
        var builder = new NpgsqlConnectionStringBuilder(location.StartsWith("postgres:", StringComparison.Ordinal) ? location["postgres:".Length..] : location);
        string name = command == "pg-create" ? "tollgate_bench_" + Secrets.RandomHex(6) : builder.Database ?? throw new ArgumentException("no Database= to drop");
        if (!name.StartsWith("tollgate_bench_", StringComparison.Ordinal))
        {
            // The bench only ever drops what it created; a typo must not drop a real deployment's database.
            throw new ArgumentException($"refusing to drop '{name}': only databases named tollgate_bench_* are dropped");
        }
        var admin = new NpgsqlConnectionStringBuilder(builder.ConnectionString) { Database = "postgres", Pooling = false };
        await using (var connection = new NpgsqlConnection(admin.ConnectionString))
        {
            await connection.OpenAsync();
            await using var sql = connection.CreateCommand();
            // The name is ours (a fixed prefix and hex), so it can be spliced into the statement.
            sql.CommandText = command == "pg-create" ? $"CREATE DATABASE {name}" : $"DROP DATABASE IF EXISTS {name} WITH (FORCE)";
            await sql.ExecuteNonQueryAsync();
        }
        if (command == "pg-create")
        {
            Console.WriteLine("postgres:" + new NpgsqlConnectionStringBuilder(builder.ConnectionString) { Database = name }.ConnectionString);
        }
        return 0;
    }

    private static List<string> Chains(DbTransaction tx, long profile, long user, int count, long now, List<(byte[] Hash, long Grant)> rows)
    {
        var grants = InsertGrants(tx, Enumerable.Repeat(profile, count).ToArray(), user, now);
        var values = new List<string>(count);
        foreach (long grant in grants)
        {
            string token = Secrets.NewRefreshToken(DateTimeOffset.FromUnixTimeMilliseconds(now));
            rows.Add((Secrets.StoreKey(token), grant));
            values.Add(token);
        }
        return values;
    }

    /// <summary>One grant per entry of <paramref name="profiles"/>; returns the new grant ids.</summary>
    private static List<long> InsertGrants(DbTransaction tx, long[] profiles, long user, long now)
    {
        var ids = new List<long>(profiles.Length);
        for (int start = 0; start < profiles.Length; start += RowsPerStatement)
        {
            int n = Math.Min(RowsPerStatement, profiles.Length - start);
            using var insert = Command(tx, "INSERT INTO grants (profile_id, user_id, scope, created_at) VALUES "
                + string.Join(", ", Enumerable.Range(0, n).Select(i => $"(@p{i}, @u, 'profile', @t)")) + " RETURNING id");
            for (int i = 0; i < n; i++)
            {
                Add(insert, $"@p{i}", profiles[start + i]);
            }
            Add(insert, "@u", user);
            Add(insert, "@t", now);
            using var reader = insert.ExecuteReader();
            while (reader.Read())
            {
                ids.Add(reader.GetInt64(0));
            }
        }
        return ids;
    }

    private static void InsertTokens(DbTransaction tx, List<(byte[] Hash, long Grant)> rows, long now)
    {
        rows.Sort((a, b) => a.Hash.AsSpan().SequenceCompareTo(b.Hash));
        InsertRows(tx, "INSERT INTO refresh_tokens (token_hash, grant_id, created_at) VALUES ", "(@h{0}, @g{0}, @t)", rows,
            (command, i, row) =>
            {
                Add(command, $"@h{i}", row.Hash);
                Add(command, $"@g{i}", row.Grant);
            },
            command => Add(command, "@t", now));
    }

    /// <summary>Inserts <paramref name="rows"/> <see cref="RowsPerStatement"/> at a time with one multi-row VALUES statement.</summary>
    private static void InsertRows<T>(DbTransaction tx, string head, string rowFormat, IReadOnlyList<T> rows,
        Action<DbCommand, int, T> bindRow, Action<DbCommand> bindShared)
    {
        for (int start = 0; start < rows.Count; start += RowsPerStatement)
        {
            int n = Math.Min(RowsPerStatement, rows.Count - start);
            using var insert = Command(tx, head + string.Join(", ", Enumerable.Range(0, n).Select(i => string.Format(CultureInfo.InvariantCulture, rowFormat, i))));
            for (int i = 0; i < n; i++)
            {
                bindRow(insert, i, rows[start + i]);
            }
            bindShared(insert);
            insert.ExecuteNonQuery();
        }
    }

    private static long InsertProfile(DbTransaction tx, string clientId, string name, string policy, string secret, long now)
    {
        using var insert = Command(tx, """
            INSERT INTO profiles (client_id, app_id, name, is_public, refresh_policy, created_at)
            VALUES (@c, @a, @n, @pub, @r, @t) RETURNING id
            """);
        Add(insert, "@c", clientId);
        Add(insert, "@a", Secrets.NewAppId());
        Add(insert, "@n", name);
        Add(insert, "@pub", false);
        Add(insert, "@r", policy);
        Add(insert, "@t", now);
        long id = Convert.ToInt64(insert.ExecuteScalar(), CultureInfo.InvariantCulture);
        foreach (var (sql, value) in new (string, object)[]
        {
            ("INSERT INTO profile_return_urls (profile_id, url) VALUES (@p, @v)", ReturnUrl),
            ("INSERT INTO profile_scopes (profile_id, scope) VALUES (@p, @v)", Scope),
            ("INSERT INTO profile_scopes (profile_id, scope) VALUES (@p, @v)", "profile"),
        })
        {
            using var rest = Command(tx, sql);
            Add(rest, "@p", id);
            Add(rest, "@v", value);
            rest.ExecuteNonQuery();
        }
        using var secretRow = Command(tx, "INSERT INTO client_secrets (profile_id, secret_hash, created_at) VALUES (@p, @h, @t)");
        Add(secretRow, "@p", id);
        Add(secretRow, "@h", Secrets.Hash(secret));
        Add(secretRow, "@t", now);
        secretRow.ExecuteNonQuery();
        return id;
    }

    private static long EnsureUser(DbTransaction tx, long now)
    {
        if (Scalar(tx, "SELECT id FROM users WHERE email = 'bench@example.com'") is { } id and not DBNull)
        {
            return Convert.ToInt64(id, CultureInfo.InvariantCulture);
        }
        using var insert = Command(tx, """
            INSERT INTO users (user_id, email, name, password_hash, created_at)
            VALUES (@u, 'bench@example.com', 'Bench', 'not-a-password-hash', @t) RETURNING id
            """);
        Add(insert, "@u", Secrets.NewUserId());
        Add(insert, "@t", now);
        return Convert.ToInt64(insert.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    private static long? ProfileRowId(DbTransaction tx, string clientId)
    {
        using var find = Command(tx, "SELECT id FROM profiles WHERE client_id = @c");
        Add(find, "@c", clientId);
        return find.ExecuteScalar() is { } id and not DBNull ? Convert.ToInt64(id, CultureInfo.InvariantCulture) : null;
    }

    /// <summary>A bare path means SQLite, as it did before PostgreSQL could be seeded.</summary>
    private static string Location(string db) =>
        db.StartsWith("sqlite:", StringComparison.Ordinal) || db.StartsWith("postgres:", StringComparison.Ordinal) ? db : "sqlite:" + db;

    private static async Task<DbConnection> OpenAsync(string location)
    {
        if (location.StartsWith("postgres:", StringComparison.Ordinal))
        {
            var postgres = new NpgsqlConnection(location["postgres:".Length..]);
            await postgres.OpenAsync();
            return postgres;
        }
        var sqlite = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = location["sqlite:".Length..], Pooling = false }.ToString());
        await sqlite.OpenAsync();
        // A big page cache keeps the 1M-row B-trees in memory while they are built; full sync at the one commit.
        using var pragmas = sqlite.CreateCommand();
        pragmas.CommandText = "PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -262144;";
        pragmas.ExecuteNonQuery();
        return sqlite;
    }

    private static DbCommand Command(DbTransaction? tx, string sql, DbConnection? connection = null)
    {
        var command = (connection ?? tx!.Connection!).CreateCommand();
        command.Transaction = tx;
        command.CommandText = sql;
        return command;
    }

    private static void Add(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        command.Parameters.Add(parameter);
    }

    private static void Execute(DbTransaction? tx, string sql, DbConnection? connection = null)
    {
        using var command = Command(tx, sql, connection);
        command.CommandTimeout = 600; // a vacuum of millions of rows on a busy machine
        command.ExecuteNonQuery();
    }

    private static object? Scalar(DbTransaction? tx, string sql, DbConnection? connection = null)
    {
        using var command = Command(tx, sql, connection);
        return command.ExecuteScalar();
    }

    internal static string? Option(string[] args, string name) =>
        Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
