using System.Threading.Channels;
using Tollgate.Server.Telemetry;

namespace Tollgate.Server.Storage.Sqlite;

/// <summary>
/// Group commit: every write in the process goes through one connection, and whatever writes
/// are waiting when a transaction starts share it and its single fsync.
/// </summary>
/// <remarks>
/// Why: with synchronous=FULL, each commit costs one fsync of the WAL (hundreds of microseconds
/// to milliseconds). Committing each request on its own caps throughput at one request per fsync;
/// batching makes the fsync cost per batch, not per request, while every request still learns
/// its outcome only after the batch is durable. Each write runs in its own SAVEPOINT, so a write
/// that fails rolls back alone and the others in its batch still commit.
/// SQLite allows one writer at a time anyway, so a single writer connection loses no parallelism;
/// BEGIN IMMEDIATE takes the file's write lock up front, which serialises us against other
/// processes (the admin CLI, a second server) with busy_timeout instead of deadlocking.
/// </remarks>
internal sealed class GroupCommitWriter : IAsyncDisposable
{
    private const int MaxBatch = 256;

    private readonly SqliteSession _session;
    private readonly Channel<WriteOperation> _queue = Channel.CreateUnbounded<WriteOperation>(
        new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _loop;

    public GroupCommitWriter(string connectionString)
    {
        _session = new SqliteSession(connectionString);
        _loop = Task.Factory.StartNew(Loop, TaskCreationOptions.LongRunning);
    }

    /// <summary>Batch sizes of the commits so far (for metrics and tests).</summary>
    public long Commits => Interlocked.Read(ref _commits);

    public long Writes => Interlocked.Read(ref _writes);

    private long _commits;
    private long _writes;

    /// <summary>Runs <paramref name="write"/> inside a transaction; completes once that transaction is durable.</summary>
    public Task<T> WriteAsync<T>(Func<SqliteSession, T> write)
    {
        var operation = new WriteOperation<T>(write);
        if (!_queue.Writer.TryWrite(operation))
        {
            return Task.FromException<T>(new ObjectDisposedException(nameof(GroupCommitWriter)));
        }
        return operation.Task;
    }

    private void Loop()
    {
        var batch = new List<WriteOperation>(MaxBatch);
        var reader = _queue.Reader;
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            batch.Clear();
            while (batch.Count < MaxBatch && reader.TryRead(out var operation))
            {
                batch.Add(operation);
            }
            CommitBatch(batch);
        }
        _session.Dispose();
    }

    private void CommitBatch(List<WriteOperation> batch)
    {
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            _session.Execute("BEGIN IMMEDIATE");
            foreach (var operation in batch)
            {
                RunInSavepoint(operation);
            }
            _session.Execute("COMMIT");
        }
        catch (Exception e)
        {
            // BEGIN, COMMIT or a savepoint failed (disk full, read-only file, lock timeout): nothing of
            // this batch is durable, so every write in it fails and its callers answer with an error.
            TryRollback();
            TollgateTelemetry.CommitFailures.Add(1);
            foreach (var operation in batch)
            {
                operation.Fail(e);
            }
            return;
        }

        Interlocked.Increment(ref _commits);
        Interlocked.Add(ref _writes, batch.Count);
        TollgateTelemetry.CommitBatchSize.Record(batch.Count);
        TollgateTelemetry.CommitDuration.Record(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
        // Only now, with the batch durable, may anyone answer a client.
        foreach (var operation in batch)
        {
            operation.Complete();
        }
    }

    private void RunInSavepoint(WriteOperation operation)
    {
        _session.Execute("SAVEPOINT write");
        try
        {
            operation.Run(_session);
        }
        catch (Exception e)
        {
            _session.Execute("ROLLBACK TO write");
            operation.Fail(e);
        }
        _session.Execute("RELEASE write");
    }

    private void TryRollback()
    {
        try
        {
            if (!_session.Connection.State.HasFlag(System.Data.ConnectionState.Open))
            {
                return;
            }
            _session.Execute("ROLLBACK");
        }
        catch (Microsoft.Data.Sqlite.SqliteException)
        {
            // No transaction was open (SQLite rolls back by itself on some I/O errors); nothing was committed.
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _loop;
    }

    private abstract class WriteOperation
    {
        public abstract void Run(SqliteSession session);

        public abstract void Complete();

        public abstract void Fail(Exception error);
    }

    private sealed class WriteOperation<T>(Func<SqliteSession, T> write) : WriteOperation
    {
        private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;
        private bool _failed;

        public Task<T> Task => _completion.Task;

        public override void Run(SqliteSession session) => _result = write(session);

        public override void Complete()
        {
            if (!_failed)
            {
                _completion.TrySetResult(_result!);
            }
        }

        public override void Fail(Exception error)
        {
            _failed = true;
            _completion.TrySetException(error);
        }
    }
}
