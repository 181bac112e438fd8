using System.Reflection;
using Npgsql;
using Tollgate.Server.Storage;
using Tollgate.Server.Storage.Postgres;
using Tollgate.Server.Storage.Sqlite;
using Xunit.Sdk;

namespace Tollgate.Tests.Infrastructure;

/// <summary>The stores the integration suite runs against: one test matrix, every test on each.</summary>
public enum StoreKind
{
    Sqlite,
    Postgres,
}

/// <summary>
/// Which stores to test, from <c>TOLLGATE_TEST_STORES</c> (default <c>sqlite,postgres</c>), and where PostgreSQL
/// is (<c>TOLLGATE_TEST_POSTGRES</c>, default the local server with password <c>postgres</c>, as TESTING.md sets it up).
/// </summary>
/// <remarks>
/// PostgreSQL is on by default and its tests fail loudly when it is not reachable: a green run must mean
/// both stores were tested. Leaving it out takes an explicit <c>TOLLGATE_TEST_STORES=sqlite</c>.
/// </remarks>
internal static class TestStores
{
    public const string StoresVariable = "TOLLGATE_TEST_STORES";
    public const string PostgresVariable = "TOLLGATE_TEST_POSTGRES";

    public static IReadOnlyList<StoreKind> Enabled { get; } = ParseEnabled();

    public static bool PostgresEnabled => Enabled.Contains(StoreKind.Postgres);

    /// <summary>Connection string of the server, without a database; each test gets its own database on it.</summary>
    public static string PostgresServer =>
        Environment.GetEnvironmentVariable(PostgresVariable) is { Length: > 0 } configured
            ? configured
            : "Host=127.0.0.1;Username=postgres;Password=postgres";

    private static List<StoreKind> ParseEnabled()
    {
        string value = Environment.GetEnvironmentVariable(StoresVariable) is { Length: > 0 } configured ? configured : "sqlite,postgres";
        var kinds = new List<StoreKind>();
        foreach (var name in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            kinds.Add(name.ToLowerInvariant() switch
            {
                "sqlite" => StoreKind.Sqlite,
                "postgres" or "postgresql" => StoreKind.Postgres,
                _ => throw new InvalidOperationException($"{StoresVariable} lists '{name}'; use sqlite, postgres or both"),
            });
        }
        return kinds;
    }
}

/// <summary>
/// Runs a theory once per enabled store, the store first: <c>[Theory, Stores]</c> for a test with no other data,
/// <c>[Theory, Stores("S256"), Stores("plain")]</c> in place of <c>InlineData</c>.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
public sealed class StoresAttribute(params object?[] data) : DataAttribute
{
    public StoresAttribute()
        : this([])
    {
    }

    public override IEnumerable<object?[]> GetData(MethodInfo testMethod) =>
        TestStores.Enabled.Select(kind => (object?[])[kind, .. data]);
}

/// <summary>A test that needs PostgreSQL itself (several nodes on one database); skipped only on an explicit opt-out.</summary>
public sealed class PostgresFactAttribute : FactAttribute
{
    public PostgresFactAttribute()
    {
        if (!TestStores.PostgresEnabled)
        {
            Skip = $"{TestStores.StoresVariable} leaves PostgreSQL out";
        }
    }
}

/// <summary>A test on the power-cut disk that also needs PostgreSQL (a private cluster on it): skipped where either is.</summary>
internal sealed class PostgresPowerCutFactAttribute : FactAttribute
{
    public PostgresPowerCutFactAttribute() => Skip = new PowerCutFactAttribute().Skip ?? new PostgresFactAttribute().Skip;
}

/// <summary>A fresh, empty database of either kind for one test, deleted afterwards.</summary>
internal sealed class TestDatabase : IAsyncDisposable
{
    /// <summary>
    /// Emptied, migrated PostgreSQL databases for <see cref="RentAsync"/>. CREATE DATABASE costs a second or more on a
    /// busy machine, emptying a few small tables a few milliseconds. What the pool holds at the end of the run is left
    /// for the next run to drop (<see cref="RunOwner"/>).
    /// </summary>
    private static readonly System.Collections.Concurrent.ConcurrentBag<string> Pool = [];

    private readonly string? _postgresName;
    private readonly bool _pooled;

    private TestDatabase(StoreKind kind, string location, string? directory, string? postgresName, bool pooled = false)
    {
        Kind = kind;
        Location = location;
        Directory = directory;
        _postgresName = postgresName;
        _pooled = pooled;
    }

    /// <summary>
    /// A database whose schema is current and whose tables are empty, as a freshly migrated one: for tests of the
    /// server's behaviour (hosts). Tests of migrations themselves use <see cref="CreateAsync"/>.
    /// </summary>
    public static async Task<TestDatabase> RentAsync(StoreKind kind)
    {
        if (kind == StoreKind.Postgres && Pool.TryTake(out var name))
        {
            return new TestDatabase(kind, "postgres:" + ConnectionStringFor(name), null, name, pooled: true);
        }
        var database = await CreateAsync(kind);
        return database._postgresName is null ? database : new TestDatabase(kind, database.Location, null, database._postgresName, pooled: true);
    }

    /// <summary>Generous timeouts: CI machines run several test processes and builds at once.</summary>
    private static string ConnectionStringFor(string name) =>
        new NpgsqlConnectionStringBuilder(TestStores.PostgresServer) { Database = name, Timeout = 60, CommandTimeout = 120 }.ConnectionString;

    public StoreKind Kind { get; }

    /// <summary>The <c>--db</c> value: <c>sqlite:PATH</c> or <c>postgres:CONNECTION-STRING</c>.</summary>
    public string Location { get; }

    /// <summary>The SQLite file's directory (null for PostgreSQL).</summary>
    public string? Directory { get; }

    public string? SqlitePath => Kind == StoreKind.Sqlite ? Location["sqlite:".Length..] : null;

    public string? PostgresConnectionString => Kind == StoreKind.Postgres ? Location["postgres:".Length..] : null;

    public static async Task<TestDatabase> CreateAsync(StoreKind kind, string? directory = null)
    {
        if (kind == StoreKind.Sqlite)
        {
            directory ??= TempDirectory.Create();
            return new TestDatabase(kind, "sqlite:" + Path.Combine(directory, "tollgate.db"), directory, null);
        }

        try
        {
            string name = RunOwner.DatabaseName(await RunOwner.KeyAsync());
            await using var admin = await OpenAdminAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", admin);
            await create.ExecuteNonQueryAsync();
            return new TestDatabase(kind, "postgres:" + ConnectionStringFor(name), null, name);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            throw new InvalidOperationException(
                $"PostgreSQL is not reachable ({Redacted()}): {e.Message}. Start it (pg_ctlcluster 15 main start; see docs/TESTING), "
                + $"point {TestStores.PostgresVariable} at one, or leave it out explicitly with {TestStores.StoresVariable}=sqlite.", e);
        }
    }

    /// <summary>Opens the store this database is for (not migrated).</summary>
    public ITokenStore OpenStore() => Kind == StoreKind.Sqlite
        ? SqliteTokenStore.Open(SqlitePath!)
        : PostgresTokenStore.Open(PostgresConnectionString!);

    /// <summary>A plain connection for assertions (PostgreSQL only), outside any pool the store uses.</summary>
    public NpgsqlConnection OpenPostgres()
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(PostgresConnectionString) { Pooling = false }.ConnectionString);
        connection.Open();
        return connection;
    }

    /// <summary>Drops a scratch database, if it is still there. FORCE ends connections a killed child process or a pool may still hold.</summary>
    internal static async Task DropAsync(NpgsqlConnection admin, string name)
    {
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", admin);
        await drop.ExecuteNonQueryAsync();
    }

    internal static async Task<NpgsqlConnection> OpenAdminAsync()
    {
        var builder = new NpgsqlConnectionStringBuilder(TestStores.PostgresServer) { Database = "postgres", Pooling = false, Timeout = 30 };
        var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    /// <summary>Back to the state of a freshly migrated database: no rows but the profile generation, at 0.</summary>
    private async Task<bool> TryEmptyAsync()
    {
        try
        {
            await using var connection = OpenPostgres();
            // Every table but the schema's own bookkeeping, whatever later migrations added (audit, web pages...).
            var tables = new List<string>();
            await using (var list = new NpgsqlCommand("""
                SELECT quote_ident(table_name) FROM information_schema.tables
                WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name NOT IN ('schema_version', 'meta')
                """, connection))
            await using (var reader = await list.ExecuteReaderAsync())
            {
                while (await reader.ReadAsync())
                {
                    tables.Add(reader.GetString(0));
                }
            }
            await using var empty = new NpgsqlCommand($"""
                TRUNCATE {string.Join(", ", tables)} RESTART IDENTITY CASCADE;
                DELETE FROM meta WHERE key <> 'profile_generation'; UPDATE meta SET value = 0;
                """, connection);
            await empty.ExecuteNonQueryAsync();
            await using var version = new NpgsqlCommand("SELECT max(version) FROM schema_version", connection);
            return (int)(await version.ExecuteScalarAsync())! == PostgresMigrations.LatestVersion;
        }
        catch (NpgsqlException)
        {
            return false;
        }
    }

    private static string Redacted()
    {
        var builder = new NpgsqlConnectionStringBuilder(TestStores.PostgresServer);
        return $"Host={builder.Host};Port={builder.Port};Username={builder.Username}";
    }

    public async ValueTask DisposeAsync()
    {
        if (_pooled && await TryEmptyAsync())
        {
            Pool.Add(_postgresName!);
            return;
        }
        if (_postgresName is not null)
        {
            await using var admin = await OpenAdminAsync();
            await DropAsync(admin, _postgresName);
        }
        else if (Directory is not null)
        {
            TempDirectory.Delete(Directory);
        }
    }
}
