using System.Text;
using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Http;
using Tollgate.Server.Crypto;
using Tollgate.Server.Protocol;

namespace Tollgate.Benchmarks;

/// <summary>
/// The CPU work of one token request, piece by piece: what the token endpoint spends besides I/O.
/// Numbers go into docs/performance.md; allocations matter as much as time (GC pauses are p99).
/// </summary>
[MemoryDiagnoser]
public class HotPathBenchmarks : IDisposable
{
    private const string ClientId = "amzn1.application-oa2-client.20534a91be57487e9c3547dada8a7394";

    private readonly AccessTokenCodec _codec = new(new Dictionary<int, byte[]> { [1] = Secrets.NewAccessTokenKey() }, 1);
    private readonly string _refreshToken = Secrets.NewRefreshToken(DateTimeOffset.UtcNow);
    private readonly byte[] _secretHash = Secrets.Hash(Seeder.BenchSecret);
    private readonly AccessTokenClaims _claims = new(
        ClientId, "amzn1.account.AF3ZKXQ2CJ3UJ6NXXXXXXXXXXXXA", "profile", 42, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch.AddHours(1));
    private readonly byte[] _form;
    private readonly DefaultHttpContext _http = new();
    private string _accessToken = "";

    public HotPathBenchmarks()
    {
        _form = Encoding.UTF8.GetBytes(
            $"grant_type=refresh_token&refresh_token={Uri.EscapeDataString(_refreshToken)}&client_id={ClientId}&client_secret={Seeder.BenchSecret}");
    }

    [GlobalSetup]
    public void Setup() => _accessToken = _codec.Seal(_claims);

    /// <summary>Minting an access token: AES-256-GCM over the claims, base64url.</summary>
    [Benchmark]
    public string SealAccessToken() => _codec.Seal(_claims);

    /// <summary>Validating one (tokeninfo): base64url decode, AES-GCM open, claims.</summary>
    [Benchmark]
    public long OpenAccessToken() => _codec.Open(_accessToken)!.GrantId;

    /// <summary>A new refresh token: its issue time and 256 CSPRNG bits, base64url.</summary>
    [Benchmark]
    public string NewRefreshToken() => Secrets.NewRefreshToken(DateTimeOffset.UnixEpoch);

    /// <summary>The store key of a refresh token: its issue time and the SHA-256 of its bytes.</summary>
    [Benchmark]
    public byte[] HashRefreshToken() => Secrets.StoreKey(_refreshToken);

    /// <summary>Client authentication: SHA-256 of the presented secret and a fixed-time compare.</summary>
    [Benchmark]
    public bool CheckClientSecret() => Secrets.Matches(Seeder.BenchSecret, _secretHash);

    /// <summary>Reading a form-encoded refresh request off the body into parameters.</summary>
    [Benchmark]
    public async Task<string?> ParseRefreshForm()
    {
        var request = _http.Request;
        request.ContentType = "application/x-www-form-urlencoded";
        request.ContentLength = _form.Length;
        request.Body = new MemoryStream(_form, writable: false);
        var (parsed, _) = await TokenRequestReader.ReadAsync(request, 16 * 1024, CancellationToken.None);
        return parsed!.RefreshToken;
    }

    public void Dispose()
    {
        _codec.Dispose();
        GC.SuppressFinalize(this);
    }
}
