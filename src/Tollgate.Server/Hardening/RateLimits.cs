using System.Net;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;
using Tollgate.Server.Telemetry;

namespace Tollgate.Server.Hardening;

/// <summary>
/// Throttling with ASP.NET Core rate limiting. Per remote address, the middleware applies named policies before a
/// request is read (<see cref="Token"/>, <see cref="Resource"/>, <see cref="SignIn"/>); per client, the token endpoint
/// asks <see cref="ClientRateLimits"/> once it knows who is calling. Every refusal is 429 with <c>Retry-After</c> and
/// the protocol's JSON error.
/// </summary>
/// <remarks>
/// All limits are token buckets: N per minute, with a burst of N, refilled evenly over the minute (at most every
/// 100 ms). The remote address is the TCP peer's: behind a reverse proxy every client shares the proxy's, so per-address
/// limits are off by default, except the one on failed client authentications that stops secret guessing.
/// </remarks>
internal static class RateLimitPolicies
{
    /// <summary>POST /auth/o2/token, per remote address.</summary>
    public const string Token = "token";

    /// <summary>tokeninfo and user profile, per remote address.</summary>
    public const string Resource = "resource";

    /// <summary>For the sign-in page (<c>.RequireRateLimiting(RateLimitPolicies.SignIn)</c>), per remote address.</summary>
    public const string SignIn = "sign-in";

    public static IServiceCollection AddTollgateRateLimiting(this IServiceCollection services, RateLimitOptions limits)
    {
        services.AddSingleton<ClientRateLimits>();
        return services.AddRateLimiter(options =>
        {
            options.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            options.AddPolicy(Token, http => PerAddress(http, limits.TokenRequestsPerIpPerMinute));
            options.AddPolicy(Resource, http => PerAddress(http, limits.ResourceRequestsPerIpPerMinute));
            options.AddPolicy(SignIn, http => PerAddress(http, limits.SignInAttemptsPerIpPerMinute));
            options.OnRejected = (context, _) =>
            {
                var http = context.HttpContext;
                string policy = http.GetEndpoint()?.Metadata.GetMetadata<EnableRateLimitingAttribute>()?.PolicyName ?? "global";
                TollgateTelemetry.Throttled.Add(1, new KeyValuePair<string, object?>("limit", policy + "_per_ip"));
                return new ValueTask(ProtocolResponse.WriteErrorAsync(http, OAuthError.TooManyRequests(
                    $"Too many requests from this address; retry after {RetryAfterSeconds(context.Lease)} s.", RetryAfterSeconds(context.Lease))));
            };
        });
    }

    private static RateLimitPartition<string> PerAddress(HttpContext http, int perMinute) =>
        perMinute == 0
            ? RateLimitPartition.GetNoLimiter("")
            : RateLimitPartition.GetTokenBucketLimiter(AddressKey(http.Connection.RemoteIpAddress), _ => Bucket(perMinute));

    internal static string AddressKey(IPAddress? address) => address?.ToString() ?? "unknown";

    /// <summary>N per minute with a burst of N: one token back every 60/N s (several per 100 ms above 600 a minute).</summary>
    public static TokenBucketRateLimiterOptions Bucket(int perMinute) => perMinute <= 600
        ? new TokenBucketRateLimiterOptions
        {
            TokenLimit = perMinute,
            TokensPerPeriod = 1,
            ReplenishmentPeriod = TimeSpan.FromTicks(TimeSpan.TicksPerMinute / perMinute),
            QueueLimit = 0,
            // The partitioned limiter refills every partition from one timer; a timer per bucket would cost one per address.
            AutoReplenishment = false,
        }
        : new TokenBucketRateLimiterOptions
        {
            TokenLimit = perMinute,
            TokensPerPeriod = (perMinute + 599) / 600,
            ReplenishmentPeriod = TimeSpan.FromMilliseconds(100),
            QueueLimit = 0,
            AutoReplenishment = false,
        };

    public static int RetryAfterSeconds(RateLimitLease lease) =>
        lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) ? Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)) : 1;
}

/// <summary>
/// The token endpoint's own limits, which need what only the endpoint knows: the authenticated client (per-client
/// limit, from its profile or the server default) and whether authentication failed (per-address failure budget).
/// </summary>
/// <remarks>
/// The per-client bucket is charged only after the client authenticated, so nobody can spend another client's
/// budget with its client id alone (a public client's id is all it has, so for public clients anyone can).
/// The failure budget is checked before authenticating: an address out of budget is refused without testing its guess.
/// </remarks>
internal sealed class ClientRateLimits(TollgateOptions options) : IDisposable
{
    private readonly PartitionedRateLimiter<ClientKey> _perClient = PartitionedRateLimiter.Create<ClientKey, ClientKey>(
        key => RateLimitPartition.GetTokenBucketLimiter(key, k => RateLimitPolicies.Bucket(k.PerMinute)));

    private readonly PartitionedRateLimiter<string> _failures = PartitionedRateLimiter.Create<string, string>(
        address => RateLimitPartition.GetTokenBucketLimiter(address, _ => RateLimitPolicies.Bucket(options.RateLimits.FailedAuthenticationsPerIpPerMinute)));

    /// <summary>The partition includes the limit, so a changed limit starts a fresh bucket (the old one is dropped when idle).</summary>
    private readonly record struct ClientKey(string ClientId, int PerMinute);

    public OAuthError? TryAcquire(Profile client)
    {
        int perMinute = client.RateLimitPerMinute ?? options.RateLimits.TokenRequestsPerClientPerMinute;
        if (perMinute == 0)
        {
            return null;
        }
        using var lease = _perClient.AttemptAcquire(new ClientKey(client.ClientId, perMinute));
        if (lease.IsAcquired)
        {
            return null;
        }
        TollgateTelemetry.Throttled.Add(1, new KeyValuePair<string, object?>("limit", "token_per_client"));
        int retry = RateLimitPolicies.RetryAfterSeconds(lease);
        return OAuthError.TooManyRequests(
            $"This client has made more than {perMinute} token requests a minute; retry after {retry} s.", retry);
    }

    /// <summary>Refuses an address whose failed-authentication budget is spent (before its credentials are looked at).</summary>
    public OAuthError? CheckFailures(IPAddress? address)
    {
        int perMinute = options.RateLimits.FailedAuthenticationsPerIpPerMinute;
        if (perMinute == 0 || _failures.GetStatistics(RateLimitPolicies.AddressKey(address)) is not { CurrentAvailablePermits: <= 0 })
        {
            return null;
        }
        TollgateTelemetry.Throttled.Add(1, new KeyValuePair<string, object?>("limit", "failed_authentication_per_ip"));
        int retry = Math.Max(1, (int)Math.Ceiling(60.0 / perMinute));
        return OAuthError.TooManyRequests(
            $"Too many failed client authentications from this address; retry after {retry} s.", retry);
    }

    public void RecordFailure(IPAddress? address)
    {
        if (options.RateLimits.FailedAuthenticationsPerIpPerMinute > 0)
        {
            _failures.AttemptAcquire(RateLimitPolicies.AddressKey(address)).Dispose();
        }
    }

    public void Dispose()
    {
        _perClient.Dispose();
        _failures.Dispose();
    }
}
