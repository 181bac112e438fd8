using Tollgate.Server.Crypto;

namespace Tollgate.Tests;

public sealed class RandomnessTests
{
    [Fact]
    public void Random_bytes_drawn_in_blocks_are_never_handed_out_twice_on_one_thread_or_across_threads()
    {
        // Far more than one block per thread (a kilobyte), in sizes that straddle refills, from four threads at once:
        // a block handed out again, or shared between threads, would repeat a 16-byte value.
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<string, bool>();
        Parallel.For(0, 4, _ =>
        {
            Span<byte> value = stackalloc byte[16];
            Span<byte> odd = stackalloc byte[13];
            for (int i = 0; i < 5_000; i++)
            {
                Secrets.FillRandom(odd);
                Secrets.FillRandom(value);
                Assert.True(seen.TryAdd(Convert.ToHexString(value), true), "the same random bytes were handed out twice");
            }
        });
        Assert.Equal(20_000, seen.Count);
    }

    [Fact]
    public void Random_bytes_look_random_bit_by_bit()
    {
        // A block left unfilled (zeros), or zeroed before it was copied out, would fail this at once.
        var bytes = new byte[64 * 1024];
        for (int offset = 0; offset < bytes.Length; offset += 32)
        {
            Secrets.FillRandom(bytes.AsSpan(offset, 32));
        }
        long ones = bytes.Sum(b => (long)System.Numerics.BitOperations.PopCount(b));
        long bits = bytes.Length * 8L;
        // Binomial(524288, 1/2): one standard deviation is 362 bits; 6 of them is a false alarm once in 500 million runs.
        Assert.InRange(ones, bits / 2 - 6 * 362, bits / 2 + 6 * 362);
        Assert.Equal(256, bytes.Distinct().Count());
    }

    [Fact]
    public void Request_ids_are_version_4_uuids_like_amazons()
    {
        var ids = Enumerable.Range(0, 1000).Select(_ => Secrets.NewRequestId().ToString()).ToList();

        Assert.All(ids, id => Assert.Matches("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", id));
        Assert.Equal(ids.Count, ids.Distinct().Count());
    }
}
