using System.Collections.Concurrent;

namespace Tollgate.Server.Storage.Sqlite;

/// <summary>
/// Read connections with their prepared statements, rented per query. In WAL mode readers never
/// block the writer nor each other, so reads scale with cores while all writes share one connection.
/// </summary>
internal sealed class ReaderPool(string connectionString) : IDisposable
{
    private readonly ConcurrentBag<SqliteSession> _idle = [];

    public T Read<T>(Func<SqliteSession, T> read)
    {
        var session = _idle.TryTake(out var idle) ? idle : new SqliteSession(connectionString);
        try
        {
            return read(session);
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
