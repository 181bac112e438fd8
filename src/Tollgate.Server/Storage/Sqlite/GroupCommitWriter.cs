using System.Collections.Concurrent;
using System.Diagnostics;
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

    /// <summary>Below this commit time (a fast disk) waiting to fill a batch would cost more than it saves.</summary>
    private static readonly long MinCommitTicksForGathering = Stopwatch.Frequency / 1000;

    /// <summary>Never hold a batch back longer than this, whatever the disk.</summary>
    private static readonly long MaxGatherTicks = Stopwatch.Frequency * 2 / 1000;

    private readonly SqliteSession _session;
    private readonly ConcurrentQueue<WriteOperation> _queue = new();
    private readonly ManualResetEventSlim _pending = new(false, spinCount: 1);
    private readonly ManualResetEventSlim _stopSignal = new(false);
    private readonly Thread _loop;
    private readonly Thread _checkpointer;
    private readonly string _connectionString;
    private volatile bool _stopping;
    private int _closed; // 1 once the loop has stopped taking writes; see WriteAsync
    private volatile bool _walRestartWanted;

    /// <summary>
    /// The WAL length (in 4 KiB frames, so 16 MiB) past which the writer restarts it between two batches; see
    /// <see cref="RestartWal"/>. journal_size_limit trims the file back to four times this after a restart.
    /// </summary>
    internal const int WalRestartFrames = 4096;

    public GroupCommitWriter(string connectionString)
    {
        _connectionString = connectionString;
        _session = new SqliteSession(connectionString);
        // Checkpoints run on their own connection (see CheckpointLoop), never inside a commit: a checkpoint
        // copies the WAL into the database file and fsyncs it, which would stall every caller of that batch.
        _session.Execute("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;");
        _loop = new Thread(Loop) { IsBackground = true, Name = "tollgate group commit" };
        _checkpointer = new Thread(CheckpointLoop) { IsBackground = true, Name = "tollgate checkpoint" };
        _loop.Start();
        _checkpointer.Start();
    }

    /// <summary>Batch sizes of the commits so far (for metrics and tests).</summary>
    public long Commits => Interlocked.Read(ref _commits);

    public long Writes => Interlocked.Read(ref _writes);

    private long _commits;
    private long _writes;

    /// <summary>Runs <paramref name="write"/> inside a transaction; completes once that transaction is durable.</summary>
    public Task<T> WriteAsync<T>(Func<SqliteSession, T> write) =>
        WriteAsync(write, static (session, w) => w(session));

    /// <summary>
    /// The same with explicit state, so hot callers pass a static lambda and allocate no closure per request.
    /// </summary>
    public Task<T> WriteAsync<TState, T>(TState state, Func<SqliteSession, TState, T> write)
    {
        if (_stopping)
        {
            return Task.FromException<T>(new ObjectDisposedException(nameof(GroupCommitWriter)));
        }
        var operation = new WriteOperation<TState, T>(state, write);
        _queue.Enqueue(operation);
        _pending.Set();
        // DisposeAsync may have begun after the check above, and the loop may already have made its last pass over the
        // queue: then nobody else will answer what was just queued. The loop sets _closed before that last pass, and the
        // queue's enqueue is a full fence, so either that pass sees this operation or this read sees _closed.
        if (Volatile.Read(ref _closed) != 0)
        {
            RefuseQueued();
        }
        return operation.Task;
    }

    private void Loop()
    {
        var batch = new List<WriteOperation>(MaxBatch);
        int lastBatch = 0;
        long lastCommitTicks = 0;
        while (true)
        {
            // Once stopping, never wait again. Under a write load the event is usually set already when DisposeAsync
            // sets it, so its Set changes nothing and the Reset below clears both; no write sets it after that, and
            // this wait hung shutdown every time (Closing_the_store_while_writes_pour_in_...). Draining until the
            // queue is empty ends the loop instead.
            if (!_stopping)
            {
                _pending.Wait();
            }
            _pending.Reset();
            batch.Clear();
            Drain(batch);
            if (batch.Count == 0)
            {
                if (_stopping)
                {
                    break;
                }
                continue;
            }
            Gather(batch, lastBatch, lastCommitTicks);
            long started = Stopwatch.GetTimestamp();
            CommitBatch(batch);
            lastCommitTicks = Stopwatch.GetTimestamp() - started;
            lastBatch = batch.Count;
            if (_walRestartWanted)
            {
                RestartWal();
            }
        }
        // A write that raced with DisposeAsync past the _stopping check: refuse it rather than leave it hanging.
        Interlocked.Exchange(ref _closed, 1);
        RefuseQueued();
        _session.Dispose();
    }

    private void RefuseQueued()
    {
        while (_queue.TryDequeue(out var late))
        {
            late.Fail(new ObjectDisposedException(nameof(GroupCommitWriter)));
        }
    }

    private void Drain(List<WriteOperation> batch)
    {
        while (batch.Count < MaxBatch && _queue.TryDequeue(out var operation))
        {
            batch.Add(operation);
        }
        if (!_queue.IsEmpty)
        {
            _pending.Set(); // more than one batch was waiting: go round again at once
        }
    }

    /// <summary>
    /// Waits, briefly, for the writers the previous commit answered to come back. In a closed loop those
    /// callers return a moment after their answer; starting the next transaction with only the first of
    /// them splits them into two batches, and half of them then wait a whole extra fsync. Waiting at most
    /// half a commit's time (and never on a disk whose commits are under a millisecond) keeps each batch
    /// whole: measured on this machine (fsync about 2.5 ms), rotate throughput at 16 connections rose by
    /// the factor docs/performance.md gives.
    /// </summary>
    private void Gather(List<WriteOperation> batch, int lastBatch, long lastCommitTicks)
    {
        if (batch.Count >= lastBatch || lastCommitTicks < MinCommitTicksForGathering || _stopping)
        {
            return;
        }
        long until = Stopwatch.GetTimestamp() + Math.Min(MaxGatherTicks, lastCommitTicks / 2);
        while (batch.Count < lastBatch && batch.Count < MaxBatch && Stopwatch.GetTimestamp() < until)
        {
            _pending.Wait(1);
            _pending.Reset();
            Drain(batch);
        }
    }

    /// <summary>
    /// Moves committed WAL frames into the database file every 100 ms, on a connection of its own with
    /// synchronous=FULL: SQLite fsyncs the WAL before copying and the database file before it lets the WAL
    /// be reused, so a checkpoint never makes a durable write less durable. PASSIVE never blocks the writer.
    /// When the WAL it reports has grown past <see cref="WalRestartFrames"/>, it asks the writer to restart it.
    /// </summary>
    private void CheckpointLoop()
    {
        using var session = new SqliteSession(_connectionString);
        long checkpointed = 0;
        while (!_stopping)
        {
            _stopSignal.Wait(100);
            long commits = Commits;
            if (commits == checkpointed)
            {
                continue;
            }
            try
            {
                using (var result = session.Command("PRAGMA wal_checkpoint(PASSIVE)").ExecuteReader())
                {
                    // One row: busy, frames in the WAL, frames checkpointed.
                    if (result.Read() && result.GetInt64(1) > WalRestartFrames)
                    {
                        _walRestartWanted = true;
                    }
                }
                checkpointed = commits;
            }
            catch (Microsoft.Data.Sqlite.SqliteException)
            {
                // Busy or I/O trouble: the frames stay in the WAL, which is durable; try again next round.
            }
        }
    }

    /// <summary>
    /// Sends the next commit back to the start of the WAL. SQLite only starts the WAL over when, at the start of a
    /// write, every frame in it has been copied into the database; under a steady write load the writer always has
    /// frames newer than the last PASSIVE checkpoint, so that moment never came and the WAL grew without bound
    /// (measured: 900 MB in 20 s of rotations, which would fill a disk within hours), each commit also paying for
    /// the file system to allocate fresh blocks. Between two batches no write is in flight, so a RESTART checkpoint
    /// here copies the few frames since the last PASSIVE one, waits for readers still on the WAL (microseconds:
    /// each is one query), and the next commit writes from the start of the file again.
    /// </summary>
    private void RestartWal()
    {
        _walRestartWanted = false;
        long started = Stopwatch.GetTimestamp();
        bool restarted = false;
        try
        {
            // Every write waits while this runs: never longer than 50 ms for a reader (an admin CLI, say) to finish.
            _session.Execute("PRAGMA busy_timeout = 50");
            using var result = _session.Command("PRAGMA wal_checkpoint(RESTART)").ExecuteReader();
            restarted = result.Read() && result.GetInt64(0) == 0;
        }
        catch (Microsoft.Data.Sqlite.SqliteException)
        {
            // Busy (another process holds a lock): the WAL stays as it is, durable; the checkpointer asks again.
        }
        finally
        {
            _session.Execute($"PRAGMA busy_timeout = {SqliteSession.BusyTimeoutMilliseconds}");
        }
        // How long the writes waited, for every attempt (copying the last frames and syncing the database file take 1 to
        // 5 ms on this project's machine); recorded before the count, so a scrape never sees a restart without its time.
        TollgateTelemetry.WalRestartDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
        if (restarted)
        {
            TollgateTelemetry.WalRestarts.Add(1);
        }
    }

    private void CommitBatch(List<WriteOperation> batch)
    {
        long started = Stopwatch.GetTimestamp();
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
        TollgateTelemetry.CommitDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
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
        // Writes already queued still commit; later ones are refused.
        _stopping = true;
        _pending.Set();
        _stopSignal.Set();
        await Task.Run(() =>
        {
            _loop.Join();
            _checkpointer.Join();
        });
        // _pending is not disposed: a write racing this call may still Set it (see WriteAsync), and an event whose
        // WaitHandle was never asked for holds no kernel object to release.
        _stopSignal.Dispose();
    }

    private abstract class WriteOperation
    {
        public abstract void Run(SqliteSession session);

        public abstract void Complete();

        public abstract void Fail(Exception error);
    }

    private sealed class WriteOperation<TState, T>(TState state, Func<SqliteSession, TState, T> write) : WriteOperation
    {
        private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;
        private bool _failed;

        public Task<T> Task => _completion.Task;

        public override void Run(SqliteSession session) => _result = write(session, state);

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
