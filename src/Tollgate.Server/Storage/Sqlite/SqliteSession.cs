using Microsoft.Data.Sqlite;

namespace Tollgate.Server.Storage.Sqlite;

/// <summary>
/// One open connection with its prepared statements. SQLite compiles a statement once per
/// command object, so keeping the commands alive per connection saves a parse on every request.
/// A session is used by one thread at a time (the writer owns one; readers rent them from a pool).
/// </summary>
internal sealed class SqliteSession : IDisposable
{
    public const int BusyTimeoutMilliseconds = 3000;

    private readonly Dictionary<string, SqliteCommand> _commands = new(StringComparer.Ordinal);

    public SqliteSession(string connectionString)
    {
        Connection = new SqliteConnection(connectionString);
        Connection.Open();
        // Per-connection settings. synchronous=FULL in WAL mode fsyncs the WAL on every commit:
        // a commit that returned survives power loss, not just a process crash. busy_timeout lets
        // the admin CLI and a running server (or two servers) share the file without SQLITE_BUSY.
        Execute($"PRAGMA busy_timeout = {BusyTimeoutMilliseconds}; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;");
    }

    public SqliteConnection Connection { get; }

    /// <summary>
    /// A cached, prepared command whose parameters are all unset. They are kept, not cleared, so that
    /// <see cref="SqliteCommandExtensions.With"/> only sets a value on the hot path instead of allocating a
    /// parameter per execution; an unset value (null) makes Microsoft.Data.Sqlite refuse to run the
    /// command, so a parameter a caller forgot still fails loudly instead of binding the last request's value.
    /// </summary>
    public SqliteCommand Command(string sql)
    {
        if (!_commands.TryGetValue(sql, out var command))
        {
            command = Connection.CreateCommand();
            command.CommandText = sql;
            _commands[sql] = command;
        }
        var parameters = command.Parameters;
        for (int i = 0; i < parameters.Count; i++) // not foreach: its enumerator is boxed, an allocation per command
        {
            parameters[i].Value = null;
        }
        return command;
    }

    public int Execute(string sql) => Command(sql).ExecuteNonQuery();

    public void Dispose()
    {
        foreach (var command in _commands.Values)
        {
            command.Dispose();
        }
        Connection.Dispose();
    }
}

internal static class SqliteCommandExtensions
{
    /// <summary>Sets a parameter, reusing the one a previous execution of this cached command created.</summary>
    public static SqliteCommand With(this SqliteCommand command, string name, object? value)
    {
        var parameters = command.Parameters;
        int index = parameters.IndexOf(name);
        if (index >= 0)
        {
            parameters[index].Value = value ?? DBNull.Value;
        }
        else
        {
            parameters.AddWithValue(name, value ?? DBNull.Value);
        }
        return command;
    }
}
