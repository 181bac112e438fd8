using System.Collections.Concurrent;
using Tollgate.Server.Storage.Postgres;

namespace Tollgate.Tests;

/// <summary>
/// How the PostgreSQL store groups requests into batch statements, apart from the database (which PostgresStoreTests and
/// the store matrix cover): the batch function here is the test's own, so that what each batch held can be seen.
/// </summary>
public sealed class PostgresGroupCommitTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task A_request_that_finds_nothing_in_flight_is_sent_at_once_and_alone()
    {
        var batches = new ConcurrentQueue<int[]>();
        var group = Group((items, _) =>
        {
            batches.Enqueue(items);
            return Task.FromResult(items.Select(i => (string?)$"r{i}").ToArray());
        }, maxInFlight: 1);

        var answer = await group.RunAsync(7).WaitAsync(Patience);

        Assert.Equal("r7", answer.Result);
        Assert.Null(answer.Failure);
        Assert.Equal([7], Assert.Single(batches));
    }

    [Fact]
    public async Task Requests_that_arrive_while_a_batch_is_in_flight_go_together_in_the_next_one_and_each_gets_its_own_result()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var batches = new ConcurrentQueue<int[]>();
        var group = Group(async (items, _) =>
        {
            batches.Enqueue(items);
            if (items[0] == 0)
            {
                await release.Task;
            }
            return items.Select(i => (string?)$"r{i}").ToArray();
        }, maxInFlight: 1);

        var first = group.RunAsync(0);
        var waiting = Enumerable.Range(1, 9).Select(group.RunAsync).ToArray();
        Assert.DoesNotContain(waiting, t => t.IsCompleted);
        release.SetResult();
        var answers = await Task.WhenAll(waiting).WaitAsync(Patience);

        Assert.Equal("r0", (await first).Result);
        Assert.Equal(Enumerable.Range(1, 9).Select(i => $"r{i}"), answers.Select(a => a.Result));
        Assert.Equal([[0], [1, 2, 3, 4, 5, 6, 7, 8, 9]], batches.ToArray());
    }

    [Fact]
    public async Task A_failed_batch_fails_only_the_requests_in_it_and_the_next_batch_goes_through()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var group = Group(async (items, _) =>
        {
            if (items[0] == 0)
            {
                await release.Task;
            }
            if (items.Contains(-1))
            {
                throw new InvalidOperationException("one bad item");
            }
            return items.Select(i => (string?)$"r{i}").ToArray();
        }, maxInFlight: 1);

        var first = group.RunAsync(0);
        var bad = group.RunAsync(-1);
        var badsNeighbour = group.RunAsync(2);
        release.SetResult();
        await Task.WhenAll(bad, badsNeighbour).WaitAsync(Patience);
        var after = await group.RunAsync(3).WaitAsync(Patience);

        Assert.Equal("r0", (await first).Result);
        Assert.IsType<InvalidOperationException>((await bad).Failure);
        Assert.IsType<InvalidOperationException>((await badsNeighbour).Failure);
        Assert.Null((await badsNeighbour).Result);
        Assert.Equal("r3", after.Result);
    }

    [Fact]
    public async Task A_null_result_leaves_that_request_to_be_decided_alone_without_a_failure()
    {
        var group = Group(
            (items, _) => Task.FromResult(items.Select(i => i % 2 == 0 ? null : (string?)$"r{i}").ToArray()),
            maxInFlight: 1);

        var even = await group.RunAsync(2).WaitAsync(Patience);

        Assert.Null(even.Result);
        Assert.Null(even.Failure);
    }

    [Fact]
    public async Task Many_requests_from_many_threads_are_each_answered_once_with_their_own_result_and_never_more_than_the_limit_in_flight()
    {
        const int Threads = 16, PerThread = 500, Limit = 2;
        int inFlight = 0, mostInFlight = 0, batchCount = 0;
        var seen = new ConcurrentDictionary<int, int>();
        var group = Group(async (items, _) =>
        {
            int now = Interlocked.Increment(ref inFlight);
            InterlockedMax(ref mostInFlight, now);
            Interlocked.Increment(ref batchCount);
            await Task.Delay(Random.Shared.Next(0, 2));
            foreach (int item in items)
            {
                seen.AddOrUpdate(item, 1, (_, n) => n + 1);
            }
            Interlocked.Decrement(ref inFlight);
            return items.Select(i => (string?)$"r{i}").ToArray();
        }, Limit);

        var workers = Enumerable.Range(0, Threads).Select(t => Task.Run(async () =>
        {
            for (int i = 0; i < PerThread; i++)
            {
                int item = t * PerThread + i;
                var answer = await group.RunAsync(item);
                Assert.Equal($"r{item}", answer.Result);
            }
        }));
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(Threads * PerThread, seen.Count);
        Assert.All(seen.Values, n => Assert.Equal(1, n));
        Assert.InRange(mostInFlight, 1, Limit);
        // Sixteen closed loops against a batch that takes a millisecond or so: they must have shared statements.
        Assert.True(batchCount < Threads * PerThread / 2, $"{batchCount} batches for {Threads * PerThread} requests");
    }

    [Fact]
    public async Task A_batch_of_one_takes_the_one_row_path_and_a_batch_of_several_the_batch_statement()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var alone = new ConcurrentQueue<int>();
        var batched = new ConcurrentQueue<int[]>();
        var group = new PostgresGroupCommit<int, string>(
            (items, _) =>
            {
                batched.Enqueue(items);
                return Task.FromResult(items.Select(i => (string?)$"b{i}").ToArray());
            },
            async (item, _) =>
            {
                alone.Enqueue(item);
                await release.Task;
                return $"a{item}";
            },
            maxInFlight: 1, CancellationToken.None);

        var first = group.RunAsync(0);
        var waiting = new[] { group.RunAsync(1), group.RunAsync(2) };
        release.SetResult();
        var answers = await Task.WhenAll(waiting).WaitAsync(Patience);

        Assert.Equal("a0", (await first).Result);
        Assert.True((await first).Alone);
        Assert.Equal(["b1", "b2"], answers.Select(a => a.Result));
        Assert.DoesNotContain(answers, a => a.Alone);
        Assert.Equal([0], alone.ToArray());
        Assert.Equal([[1, 2]], batched.ToArray());
    }

    [Fact]
    public async Task A_request_that_arrives_as_the_last_runner_gives_up_its_slot_is_still_sent()
    {
        // The runner has found the queue empty and not yet given up its slot. A request arriving at that moment sees
        // every slot taken and leaves its item to the runner, which is leaving: unless the runner looks at the queue once
        // more after giving up the slot, the request waits for the next arrival, which on a quiet node may never come.
        Task<Batched<string>>? late = null;
        PostgresGroupCommit<int, string>? group = null;
        group = new(
            (items, _) => Task.FromResult(items.Select(i => (string?)$"r{i}").ToArray()),
            (item, _) => Task.FromResult<string?>($"r{item}"),
            maxInFlight: 1, CancellationToken.None,
            givingUpSlot: () => late ??= group!.RunAsync(2));

        var first = await group.RunAsync(1).WaitAsync(Patience);

        Assert.Equal("r1", first.Result);
        Assert.NotNull(late);
        Assert.Equal("r2", (await late.WaitAsync(Patience)).Result);
    }

    /// <summary>The batcher with a batch of one run through the same function, so that every batch the test sees is recorded alike.</summary>
    private static PostgresGroupCommit<int, string> Group(Func<int[], CancellationToken, Task<string?[]>> runBatch, int maxInFlight) =>
        new(runBatch, async (item, ct) => (await runBatch([item], ct))[0], maxInFlight, CancellationToken.None);

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while (value > (current = Volatile.Read(ref target)) && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }
}
