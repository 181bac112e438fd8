using Tollgate.Server.Crypto;

namespace Tollgate.Tests;

public sealed class StoreKeyTests
{
    private static readonly DateTimeOffset Noon = new(2026, 11, 29, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Keys_of_later_refresh_tokens_and_codes_sort_after_earlier_ones()
    {
        // The point of the time prefix: new rows land at the end of the store's B-tree, not on random pages.
        var tokens = Enumerable.Range(0, 50).Select(i => Secrets.StoreKey(Secrets.NewRefreshToken(Noon.AddMilliseconds(i * 7)))).ToList();
        var codes = Enumerable.Range(0, 50).Select(i => Secrets.StoreKey(Secrets.NewAuthorizationCode(Noon.AddSeconds(i)))).ToList();

        Assert.Equal(tokens, tokens.Order(ByteOrder.Instance));
        Assert.Equal(codes, codes.Order(ByteOrder.Instance));
        Assert.All(tokens.Concat(codes), key => Assert.Equal(6 + Secrets.HashLength, key.Length));
    }

    [Fact]
    public void A_key_is_the_issue_time_then_the_hash_of_the_whole_token()
    {
        string token = Secrets.NewRefreshToken(Noon);
        var key = Secrets.StoreKey(token);

        Assert.Equal(Noon.ToUnixTimeMilliseconds(), Convert.ToInt64(Convert.ToHexString(key[..6]), 16));
        Assert.Equal(Secrets.Hash(token), key[6..]);
    }

    [Fact]
    public void A_token_with_its_time_changed_has_a_different_key_and_so_finds_nothing()
    {
        string token = Secrets.NewRefreshToken(Noon);
        int timeStart = Secrets.RefreshTokenPrefix.Length;
        string other = Secrets.NewRefreshToken(Noon.AddDays(1));
        string forged = token[..timeStart] + other[timeStart..(timeStart + 8)] + token[(timeStart + 8)..];

        var key = Secrets.StoreKey(token);
        var forgedKey = Secrets.StoreKey(forged);

        Assert.NotEqual(key[..6], forgedKey[..6]);
        Assert.NotEqual(key[6..], forgedKey[6..]);
    }

    [Theory]
    [InlineData("Atzr|HOaLCu7znasmM9CRpj8Cqg-QzpSMZ6wQUQ2dFauQHrg")] // issued before the time prefix: 43 characters
    [InlineData("IwEBIHOaLCu7znasmM9CRpj8Cqg")] // an old-style code of another length
    [InlineData("Atzr|!!!!!!!!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")] // the new length, but not base64url
    public void Values_without_an_issue_time_are_keyed_by_their_hash_alone(string value)
    {
        Assert.Equal(Secrets.Hash(value), Secrets.StoreKey(value));
    }

    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();

        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}
