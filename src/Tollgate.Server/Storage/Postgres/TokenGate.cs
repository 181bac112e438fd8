namespace Tollgate.Server.Storage.Postgres;

/// <summary>
/// Lets one request per code or refresh token at a time, within this node, into the database; the others
/// wait here, in memory, holding no connection.
/// </summary>
/// <remarks>
/// Why: a client that fires many refreshes of one token at once (a retry loop, many workers sharing a token)
/// would otherwise open one connection per request and queue them all on that token's row lock, exhausting the
/// pool and running into <c>lock_timeout</c> while each waits behind all the others' commits. With this gate,
/// the database sees at most one waiter per node for a row, and the row lock only arbitrates between nodes.
/// Correctness does not depend on it: the row lock decides.
/// </remarks>
internal sealed class TokenGate
{
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    public async Task<T> RunAsync<T>(byte[] key, Func<Task<T>> action, CancellationToken ct)
    {
        string name = Convert.ToHexString(key);
        Entry entry;
        lock (_entries)
        {
            if (!_entries.TryGetValue(name, out entry!))
            {
                _entries[name] = entry = new Entry();
            }
            entry.Users++;
        }
        bool entered = false;
        try
        {
            await entry.Gate.WaitAsync(ct);
            entered = true;
            return await action();
        }
        finally
        {
            if (entered)
            {
                entry.Gate.Release();
            }
            lock (_entries)
            {
                if (--entry.Users == 0)
                {
                    _entries.Remove(name);
                }
            }
        }
    }

    private sealed class Entry
    {
        // Never disposed: a SemaphoreSlim holds no OS handle unless AvailableWaitHandle is used.
        public SemaphoreSlim Gate { get; } = new(1, 1);

        public int Users { get; set; }
    }
}
