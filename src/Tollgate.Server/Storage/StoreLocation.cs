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
            problem = "the PostgreSQL store is not part of this build yet; use sqlite:PATH";
            return null;
        }
        problem = $"--db must be sqlite:PATH or postgres:CONNECTION-STRING, not '{Protocol.TokenRequestReader.Printable(location)}'";
        return null;
    }
}
