using System.Collections.Concurrent;
using System.Diagnostics;
using Tollgate.Server.Telemetry;

namespace Tollgate.Server.Storage.Postgres;

/// <summary>
/// Group commit for PostgreSQL: requests of one kind (rotations, say) that arrive while this node already has a
/// batch of them at the database wait here and then go together, in one statement, one round trip and one commit.
/// Reads on the hot path (an exchange's code) are batched the same way, for the round trips.
/// </summary>
/// <remarks>
/// Why: one request, one statement costs PostgreSQL a backend wake-up, a plan execution and a WAL flush each, and on
/// a busy node the backends, the node and the load compete for the same cores; the SQLite store's
/// <see cref="Sqlite.GroupCommitWriter"/> showed how much a shared commit saves. A request that finds nothing in flight
/// is sent at once, so an idle node adds no latency; batches only form when requests arrive faster than the database
/// answers. Every item still learns its outcome only from the committed statement: nobody is answered early.
/// <para>
/// A batch of several must not wait on row locks (it locks with <c>SKIP LOCKED</c>): a row another node holds would
/// otherwise stall every request in the batch, and two nodes' batches could deadlock. An item the batch skipped
/// or could not decide comes back with a null result, and its caller takes the single-request path, which waits
/// for the row lock as before. A batch of one goes as one row instead (<c>runAlone</c>): the array form cost a lone
/// request about a third of its throughput (docs/performance.md). It may wait, as a request always did: it holds up
/// only itself and one slot, and the other slot keeps batching.
/// </para>
/// </remarks>
internal sealed class PostgresGroupCommit<TItem, TResult>
    where TResult : class
{
    /// <summary>No more items than this in one statement: PostgreSQL plans a few hundred array elements in microseconds.</summary>
    internal const int MaxBatch = 256;

    private readonly Func<TItem[], CancellationToken, Task<TResult?[]>> _runBatch;
    private readonly Func<TItem, CancellationToken, Task<TResult?>> _runAlone;
    private readonly int _maxInFlight;
    private readonly CancellationToken _stopping;
    private readonly Action? _givingUpSlot;
    private readonly ConcurrentQueue<Pending> _queue = new();
    private int _inFlight;
    private long _batches;
    private long _items;

    /// <param name="runBatch">Runs two or more items in one statement; returns each item's result, in order, or null for "decide alone".</param>
    /// <param name="runAlone">Runs a batch of one, the same work as one row.</param>
    /// <param name="maxInFlight">
    /// How many batches this node may have at the database at once. More than one lets a batch form and travel while
    /// the last one commits, as PostgreSQL's own WAL flushes overlap.
    /// </param>
    /// <param name="stopping">Cancels batches when the store closes; a request's own cancellation does not, since
    /// its batch carries other requests.</param>
    /// <param name="givingUpSlot">
    /// For tests only: runs when a runner has found the queue empty and is about to give up its slot, the one moment
    /// an arrival can find every slot taken by a runner that will take nothing more (see <see cref="RunBatchesAsync"/>).
    /// </param>
    public PostgresGroupCommit(
        Func<TItem[], CancellationToken, Task<TResult?[]>> runBatch, Func<TItem, CancellationToken, Task<TResult?>> runAlone,
        int maxInFlight, CancellationToken stopping, Action? givingUpSlot = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxInFlight, 1);
        _runBatch = runBatch;
        _runAlone = runAlone;
        _maxInFlight = maxInFlight;
        _stopping = stopping;
        _givingUpSlot = givingUpSlot;
    }

    /// <summary>Statements sent so far, and the requests they carried (for tests; operators have the metrics).</summary>
    public (long Batches, long Items) Sent => (Interlocked.Read(ref _batches), Interlocked.Read(ref _items));

    /// <summary>Requests waiting for a slot right now (for tests that need a batch to form, not merely hope it does).</summary>
    public int Waiting => _queue.Count;

    /// <summary>
    /// The item's result from a committed batch, null when the batch left the item to be decided alone, or the
    /// batch's failure (<see cref="Batched{TResult}.Failure"/>), which the caller judges as it would its own.
    /// </summary>
    public Task<Batched<TResult>> RunAsync(TItem item)
    {
        var pending = new Pending(item);
        _queue.Enqueue(pending);
        StartBatchIfRoom();
        return pending.Completion.Task;
    }

    private void StartBatchIfRoom()
    {
        while (!_queue.IsEmpty)
        {
            int inFlight = Volatile.Read(ref _inFlight);
            if (inFlight >= _maxInFlight)
            {
                return; // a running batch picks the item up when it is done
            }
            if (Interlocked.CompareExchange(ref _inFlight, inFlight + 1, inFlight) == inFlight)
            {
                _ = RunBatchesAsync();
                return;
            }
        }
    }

    private async Task RunBatchesAsync()
    {
        try
        {
            while (TakeBatch() is { } batch)
            {
                await RunBatchAsync(batch);
            }
        }
        finally
        {
            _givingUpSlot?.Invoke();
            Interlocked.Decrement(ref _inFlight);
            // An item queued after the last TakeBatch, while every slot looked taken, would otherwise wait for the next arrival.
            StartBatchIfRoom();
        }
    }

    private List<Pending>? TakeBatch()
    {
        var batch = new List<Pending>();
        while (batch.Count < MaxBatch && _queue.TryDequeue(out var pending))
        {
            batch.Add(pending);
        }
        return batch.Count == 0 ? null : batch;
    }

    private async Task RunBatchAsync(List<Pending> batch)
    {
        var items = new TItem[batch.Count];
        for (int i = 0; i < batch.Count; i++)
        {
            items[i] = batch[i].Item;
        }
        TResult?[] results;
        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _items, items.Length);
        long started = Stopwatch.GetTimestamp();
        try
        {
            results = items.Length == 1 ? [await _runAlone(items[0], _stopping)] : await _runBatch(items, _stopping);
        }
        catch (Exception e)
        {
            TollgateTelemetry.CommitFailures.Add(1);
            // The statement failed (or its fate is unknown): nobody in it is answered from it, and each caller decides
            // alone, knowing why. One bad item must not cost the others more than a second trip.
            foreach (var pending in batch)
            {
                pending.Completion.TrySetResult(new Batched<TResult>(null, e, Alone: batch.Count == 1));
            }
            return;
        }
        // The same instruments as SQLite's group commit: an operator reads batching the same way on either store.
        TollgateTelemetry.CommitBatchSize.Record(batch.Count);
        TollgateTelemetry.CommitDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
        for (int i = 0; i < batch.Count; i++)
        {
            batch[i].Completion.TrySetResult(new Batched<TResult>(results[i], null, Alone: batch.Count == 1));
        }
    }

    private sealed class Pending(TItem item)
    {
        public TItem Item { get; } = item;

        public TaskCompletionSource<Batched<TResult>> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

/// <summary>
/// One item's share of a batch: its result (null: decide alone), or the failure of the whole batch; <paramref name="Alone"/>
/// when the batch carried this item only, so that its failure is the item's own.
/// </summary>
internal readonly record struct Batched<TResult>(TResult? Result, Exception? Failure, bool Alone)
    where TResult : class;
