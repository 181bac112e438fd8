using System.Collections.Concurrent;

namespace Tollgate.Server.Storage.Sqlite;

/// <summary>
/// Read connections with their prepared statements, rented per query. In WAL mode readers never
/// block the writer nor each other, so reads scale with cores while all writes share one connection.
/// </summary>
internal sealed class ReaderPool(string connectionString) : IDisposable
{
    private readonly ConcurrentBag<SqliteSession> _idle = [];

    public T Read<T>(Func<SqliteSession, T> read) => Read(read, static (session, r) => r(session));

    /// <summary>The same with explicit state, so hot queries pass a static lambda and allocate no closure.</summary>
    public T Read<TState, T>(TState state, Func<SqliteSession, TState, T> read)
    {
        var session = _idle.TryTake(out var idle) ? idle : new SqliteSession(connectionString);
        try
        {
            return read(session, state);
        }
        finally
        {
            _idle.Add(session);
        }
    }

    public void Dispose()
    {
        while (_idle.TryTake(out var session))
        {
            session.Dispose();
        }
    }
}
