using Tollgate.Server.Storage.Postgres;
using Tollgate.Server.Storage.Sqlite;

namespace Tollgate.Server.Storage;

/// <summary>
/// Parses a <c>--db</c> value: <c>sqlite:PATH</c> (the default, <c>sqlite:tollgate.db</c>) or
/// <c>postgres:CONNECTION-STRING</c>, and opens the matching store.
/// </summary>
internal static class StoreLocation
{
    public const string Default = "sqlite:tollgate.db";
    public const string EnvironmentVariable = "TOLLGATE_DB";

    /// <summary>The explicit value, else <c>TOLLGATE_DB</c>, else the default.</summary>
    public static string Resolve(string? explicitValue) =>
        !string.IsNullOrWhiteSpace(explicitValue) ? explicitValue
        : Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } fromEnv ? fromEnv
        : Default;

    /// <summary>Opens the store; a usage problem (bad scheme) comes back as <paramref name="problem"/>.</summary>
    public static ITokenStore? TryOpen(string location, out string? problem)
    {
        problem = null;
        if (location.StartsWith("sqlite:", StringComparison.Ordinal))
        {
            string path = location["sqlite:".Length..];
            if (path.Length == 0)
            {
                problem = "--db sqlite: needs a file path, e.g. sqlite:tollgate.db";
                return null;
            }
            return SqliteTokenStore.Open(path);
        }
        if (location.StartsWith("postgres:", StringComparison.Ordinal))
        {
            string connectionString = location["postgres:".Length..];
            if (connectionString.Length == 0)
            {
                problem = "--db postgres: needs a connection string, e.g. postgres:Host=db;Database=tollgate;Username=tollgate;Password=...";
                return null;
            }
            try
            {
                return PostgresTokenStore.Open(connectionString);
            }
            catch (ArgumentException e)
            {
                // Npgsql names the bad keyword; the message never contains the password.
                problem = $"--db postgres: the connection string is not valid: {e.Message}";
                return null;
            }
        }
        problem = $"--db must be sqlite:PATH or postgres:CONNECTION-STRING, not '{Protocol.TokenRequestReader.Printable(location)}'";
        return null;
    }

    /// <summary>The location as it may appear in messages and logs: a PostgreSQL password is never printed.</summary>
    public static string Describe(string location)
    {
        if (!location.StartsWith("postgres:", StringComparison.Ordinal))
        {
            return location;
        }
        try
        {
            var builder = new Npgsql.NpgsqlConnectionStringBuilder(location["postgres:".Length..]);
            return $"postgres:Host={builder.Host};Port={builder.Port};Database={builder.Database};Username={builder.Username}";
        }
        catch (ArgumentException)
        {
            return "postgres:(unparsable connection string)";
        }
    }
}
