using System.Globalization;
using System.Security.Cryptography;
using Microsoft.Data.Sqlite;
using Tollgate.Server.Crypto;
using Tollgate.Server.Storage.Sqlite;

namespace Tollgate.Benchmarks;

/// <summary>
/// Fills a database for bench/run.sh far faster than the API could: rows go in with plain SQL in one
/// transaction, refresh-token hashes sorted so the primary-key B-tree is appended to, not split at random.
/// The schema itself comes from the server's own migrations, so a seeded file is a real Tollgate file.
/// </summary>
/// <remarks>
/// Bench-only. What it writes is what the server would have written (hashes only, same columns), but
/// without the API's checks, so it is never shipped in the tollgate CLI.
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

    /// <summary>
    /// <c>seed --db PATH --out DIR [--chains N] [--profiles N] [--tokens N]</c>: on a fresh file, creates the two
    /// bench clients (reuse and rotate policy) with N refresh-token chains each, written to DIR; then adds
    /// filler profiles and live refresh tokens (their values are thrown away; only their hashes are stored).
    /// Can run again on the same file, even while a server uses it, to grow the store step by step.
    /// </summary>
    public static async Task<int> SeedAsync(string[] args)
    {
        string db = Option(args, "--db") ?? throw new ArgumentException("--db PATH is required");
        string outDir = Option(args, "--out") ?? throw new ArgumentException("--out DIR is required");
        int chains = int.Parse(Option(args, "--chains") ?? "256", CultureInfo.InvariantCulture);
        int profiles = int.Parse(Option(args, "--profiles") ?? "0", CultureInfo.InvariantCulture);
        int tokens = int.Parse(Option(args, "--tokens") ?? "0", CultureInfo.InvariantCulture);
        Directory.CreateDirectory(outDir);

        await using (var store = SqliteTokenStore.Open(db))
        {
            await store.MigrateAsync(CancellationToken.None);
        }
        var started = System.Diagnostics.Stopwatch.StartNew();
        using var connection = Open(db);
        using var tx = connection.BeginTransaction();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        long user = EnsureUser(connection, now);

        if (ProfileRowId(connection, ReuseClientId) is null)
        {
            long reuse = InsertProfile(connection, ReuseClientId, "bench reuse", "reuse", BenchSecret, now);
            long rotate = InsertProfile(connection, RotateClientId, "bench rotate", "rotate", BenchSecret, now);
            var rows = new List<(byte[] Hash, long Grant)>();
            await File.WriteAllLinesAsync(Path.Combine(outDir, "reuse-tokens.txt"), Chains(connection, reuse, user, chains, now, rows));
            await File.WriteAllLinesAsync(Path.Combine(outDir, "rotate-tokens.txt"), Chains(connection, rotate, user, chains, now, rows));
            InsertTokens(connection, rows, now);
        }

        var filler = new List<long>();
        int existingFillers = Convert.ToInt32(Scalar(connection, "SELECT count(*) FROM profiles"), CultureInfo.InvariantCulture);
        for (int i = 0; i < profiles; i++)
        {
            string clientId = "amzn1.application-oa2-client." + Secrets.RandomHex(16);
            filler.Add(InsertProfile(connection, clientId, $"filler {existingFillers + i}", i % 2 == 0 ? "reuse" : "rotate", Secrets.NewClientSecret(), now));
        }
        if (filler.Count == 0)
        {
            using var all = connection.CreateCommand();
            all.CommandText = "SELECT id FROM profiles";
            using var reader = all.ExecuteReader();
            while (reader.Read())
            {
                filler.Add(reader.GetInt64(0));
            }
        }

        if (tokens > 0)
        {
            // One grant per token, like a million users who each authorized one app once.
            var rows = new List<(byte[] Hash, long Grant)>(tokens);
            using var grant = GrantCommand(connection, user, now);
            for (int i = 0; i < tokens; i++)
            {
                grant.Parameters["$p"].Value = filler[i % filler.Count];
                long grantId = (long)grant.ExecuteScalar()!;
                rows.Add((RandomNumberGenerator.GetBytes(Secrets.HashLength), grantId));
            }
            InsertTokens(connection, rows, now);
        }
        Execute(connection, "UPDATE meta SET value = value + 1 WHERE key = 'profile_generation'");
        tx.Commit();

        long live = Convert.ToInt64(Scalar(connection, "SELECT count(*) FROM refresh_tokens WHERE consumed_at IS NULL"), CultureInfo.InvariantCulture);
        long profileCount = Convert.ToInt64(Scalar(connection, "SELECT count(*) FROM profiles"), CultureInfo.InvariantCulture);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"seeded: profiles={profileCount} live_refresh_tokens={live} in {started.Elapsed.TotalSeconds:F1} s"));
        return 0;
    }

    /// <summary><c>codes --db PATH --client-id ID --count N --out FILE</c>: N fresh authorization codes (5-minute lifetime, as the server mints them).</summary>
    public static async Task<int> CodesAsync(string[] args)
    {
        string db = Option(args, "--db") ?? throw new ArgumentException("--db PATH is required");
        string clientId = Option(args, "--client-id") ?? ReuseClientId;
        int count = int.Parse(Option(args, "--count") ?? "10000", CultureInfo.InvariantCulture);
        string outFile = Option(args, "--out") ?? throw new ArgumentException("--out FILE is required");
        using var connection = Open(db);
        using var tx = connection.BeginTransaction();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        long user = EnsureUser(connection, now);
        long profile = ProfileRowId(connection, clientId) ?? throw new ArgumentException($"no profile {clientId}; run seed first");
        using var insert = connection.CreateCommand();
        insert.CommandText = """
            INSERT INTO authorization_codes (code_hash, profile_id, user_id, redirect_uri, scope, created_at, expires_at)
            VALUES ($h, $p, $u, $r, 'profile', $t, $e)
            """;
        insert.Parameters.Add("$h", SqliteType.Blob);
        insert.Parameters.AddWithValue("$p", profile);
        insert.Parameters.AddWithValue("$u", user);
        insert.Parameters.AddWithValue("$r", ReturnUrl);
        insert.Parameters.AddWithValue("$t", now);
        insert.Parameters.AddWithValue("$e", now + 300_000);
        var codes = new string[count];
        for (int i = 0; i < count; i++)
        {
            codes[i] = Secrets.NewAuthorizationCode();
            insert.Parameters["$h"].Value = Secrets.Hash(codes[i]);
            insert.ExecuteNonQuery();
        }
        tx.Commit();
        await File.WriteAllLinesAsync(outFile, codes);
        return 0;
    }

    private static List<string> Chains(SqliteConnection connection, long profile, long user, int count, long now, List<(byte[] Hash, long Grant)> rows)
    {
        var values = new List<string>(count);
        using var grant = GrantCommand(connection, user, now);
        grant.Parameters["$p"].Value = profile;
        for (int i = 0; i < count; i++)
        {
            string token = Secrets.NewRefreshToken();
            rows.Add((Secrets.Hash(token), (long)grant.ExecuteScalar()!));
            values.Add(token);
        }
        return values;
    }

    private static SqliteCommand GrantCommand(SqliteConnection connection, long user, long now)
    {
        var grant = connection.CreateCommand();
        grant.CommandText = "INSERT INTO grants (profile_id, user_id, scope, created_at) VALUES ($p, $u, 'profile', $t) RETURNING id";
        grant.Parameters.Add("$p", SqliteType.Integer);
        grant.Parameters.AddWithValue("$u", user);
        grant.Parameters.AddWithValue("$t", now);
        return grant;
    }

    private static void InsertTokens(SqliteConnection connection, List<(byte[] Hash, long Grant)> rows, long now)
    {
        rows.Sort((a, b) => a.Hash.AsSpan().SequenceCompareTo(b.Hash));
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO refresh_tokens (token_hash, grant_id, created_at) VALUES ($h, $g, $t)";
        insert.Parameters.Add("$h", SqliteType.Blob);
        insert.Parameters.Add("$g", SqliteType.Integer);
        insert.Parameters.AddWithValue("$t", now);
        foreach (var (hash, grant) in rows)
        {
            insert.Parameters["$h"].Value = hash;
            insert.Parameters["$g"].Value = grant;
            insert.ExecuteNonQuery();
        }
    }

    private static long InsertProfile(SqliteConnection connection, string clientId, string name, string policy, string secret, long now)
    {
        using var insert = connection.CreateCommand();
        insert.CommandText = """
            INSERT INTO profiles (client_id, app_id, name, is_public, refresh_policy, created_at)
            VALUES ($c, $a, $n, 0, $r, $t) RETURNING id
            """;
        insert.Parameters.AddWithValue("$c", clientId);
        insert.Parameters.AddWithValue("$a", Secrets.NewAppId());
        insert.Parameters.AddWithValue("$n", name);
        insert.Parameters.AddWithValue("$r", policy);
        insert.Parameters.AddWithValue("$t", now);
        long id = (long)insert.ExecuteScalar()!;
        using var rest = connection.CreateCommand();
        rest.CommandText = """
            INSERT INTO profile_return_urls (profile_id, url) VALUES ($p, $u);
            INSERT INTO profile_scopes (profile_id, scope) VALUES ($p, $s);
            INSERT INTO profile_scopes (profile_id, scope) VALUES ($p, 'profile');
            INSERT INTO client_secrets (profile_id, secret_hash, created_at) VALUES ($p, $h, $t);
            """;
        rest.Parameters.AddWithValue("$p", id);
        rest.Parameters.AddWithValue("$u", ReturnUrl);
        rest.Parameters.AddWithValue("$s", Scope);
        rest.Parameters.AddWithValue("$h", Secrets.Hash(secret));
        rest.Parameters.AddWithValue("$t", now);
        rest.ExecuteNonQuery();
        return id;
    }

    private static long EnsureUser(SqliteConnection connection, long now)
    {
        if (Scalar(connection, "SELECT id FROM users WHERE email = 'bench@example.com'") is long id)
        {
            return id;
        }
        using var insert = connection.CreateCommand();
        insert.CommandText = """
            INSERT INTO users (user_id, email, name, password_hash, created_at)
            VALUES ($u, 'bench@example.com', 'Bench', 'not-a-password-hash', $t) RETURNING id
            """;
        insert.Parameters.AddWithValue("$u", Secrets.NewUserId());
        insert.Parameters.AddWithValue("$t", now);
        return (long)insert.ExecuteScalar()!;
    }

    private static long? ProfileRowId(SqliteConnection connection, string clientId)
    {
        using var find = connection.CreateCommand();
        find.CommandText = "SELECT id FROM profiles WHERE client_id = $c";
        find.Parameters.AddWithValue("$c", clientId);
        return find.ExecuteScalar() as long?;
    }

    private static SqliteConnection Open(string db)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = db, Pooling = false }.ToString());
        connection.Open();
        // A big page cache keeps the 1M-row B-trees in memory while they are built; full sync at the one commit.
        Execute(connection, "PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -262144;");
        return connection;
    }

    private static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static object? Scalar(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    private static string? Option(string[] args, string name) =>
        Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
