using Microsoft.Extensions.Configuration;

namespace Tollgate.Server;

/// <summary>Server settings, bound from the <c>Tollgate</c> configuration section (env: <c>Tollgate__Name</c>).</summary>
internal sealed class TollgateOptions
{
    /// <summary>Access-token lifetime; Amazon's is 3600 s.</summary>
    public int AccessTokenLifetimeSeconds { get; set; } = 3600;

    /// <summary>Authorization-code lifetime; Amazon's is 300 s (RFC 6749 §4.1.2 recommends at most 10 minutes).</summary>
    public int AuthorizationCodeLifetimeSeconds { get; set; } = 300;

    /// <summary>How long a rotated refresh token may still be replayed without revoking its grant (Okta's default).</summary>
    public int RotationGraceSeconds { get; set; } = 30;

    /// <summary>Largest token-request body accepted; real requests are a few hundred bytes.</summary>
    public int MaxTokenRequestBytes { get; set; } = 16 * 1024;

    /// <summary>How often a node checks whether another process changed a security profile.</summary>
    public int ProfileCacheRefreshMilliseconds { get; set; } = 1000;

    /// <summary>How often the housekeeping job prunes the store (one node at a time); 0 turns it off on this node.</summary>
    public int PruneIntervalSeconds { get; set; } = 300;

    /// <summary>Rows per table and transaction in a prune batch: small, so a batch never holds the store for long.</summary>
    public int PruneBatchSize { get; set; } = 500;

    /// <summary>
    /// How long an expired code, a consumed refresh token or a revoked grant is kept before it is pruned (7 days).
    /// While kept, replaying it is still recognised: a replayed code revokes its grant (RFC 6749 §4.1.2) and a
    /// replayed rotated refresh token revokes its family (RFC 9700 §4.14). After it, the replay is refused as unknown.
    /// </summary>
    public int PruneRetentionSeconds { get; set; } = 7 * 24 * 3600;

    /// <summary>The <c>iss</c> that tokeninfo reports; defaults to the scheme and host the request came to.</summary>
    public string? Issuer { get; set; }

    /// <summary>How long a web session lasts after sign-in (absolute, not sliding).</summary>
    public int SessionLifetimeMinutes { get; set; } = 12 * 60;

    /// <summary>Failed sign-ins per account within the throttle window before sign-in pauses for that account.</summary>
    public int SignInMaxFailuresPerAccount { get; set; } = 5;

    /// <summary>Failed sign-ins per client address (IPv6: per /64) within the window before sign-in pauses for it.</summary>
    public int SignInMaxFailuresPerAddress { get; set; } = 20;

    public int SignInThrottleWindowSeconds { get; set; } = 15 * 60;

    /// <summary>Lifetime of a device code pair; Amazon's is 600 s.</summary>
    public int DeviceCodeLifetimeSeconds { get; set; } = 600;

    /// <summary>The polling interval devices are told; polling faster is answered with slow_down.</summary>
    public int DeviceCodePollIntervalSeconds { get; set; } = 5;

    /// <summary>Reads the <c>Tollgate</c> section; the server and the admin CLI read the same sources.</summary>
    public static TollgateOptions Load(IConfiguration configuration)
    {
        var options = new TollgateOptions();
        configuration.GetSection("Tollgate").Bind(options);
        return options;
    }

    public TimeSpan AccessTokenLifetime => TimeSpan.FromSeconds(AccessTokenLifetimeSeconds);

    public TimeSpan AuthorizationCodeLifetime => TimeSpan.FromSeconds(AuthorizationCodeLifetimeSeconds);

    public TimeSpan RotationGrace => TimeSpan.FromSeconds(RotationGraceSeconds);

    public TimeSpan SessionLifetime => TimeSpan.FromMinutes(SessionLifetimeMinutes);

    public TimeSpan SignInThrottleWindow => TimeSpan.FromSeconds(SignInThrottleWindowSeconds);

    public TimeSpan DeviceCodeLifetime => TimeSpan.FromSeconds(DeviceCodeLifetimeSeconds);

    public TimeSpan DeviceCodePollInterval => TimeSpan.FromSeconds(DeviceCodePollIntervalSeconds);
    public TimeSpan PruneRetention => TimeSpan.FromSeconds(PruneRetentionSeconds);

    /// <summary>Names the first bad setting, so a misconfigured server refuses to start with a clear message.</summary>
    public string? Validate() =>
        AccessTokenLifetimeSeconds is < 60 or > 86_400 ? "Tollgate:AccessTokenLifetimeSeconds must be between 60 and 86400"
        : AuthorizationCodeLifetimeSeconds is < 10 or > 600 ? "Tollgate:AuthorizationCodeLifetimeSeconds must be between 10 and 600"
        : RotationGraceSeconds is < 0 or > 3600 ? "Tollgate:RotationGraceSeconds must be between 0 and 3600"
        : MaxTokenRequestBytes is < 1024 or > 1024 * 1024 ? "Tollgate:MaxTokenRequestBytes must be between 1024 and 1048576"
        : ProfileCacheRefreshMilliseconds is < 50 or > 60_000 ? "Tollgate:ProfileCacheRefreshMilliseconds must be between 50 and 60000"
        : SessionLifetimeMinutes is < 1 or > 30 * 24 * 60 ? "Tollgate:SessionLifetimeMinutes must be between 1 and 43200"
        : SignInMaxFailuresPerAccount is < 1 or > 1000 ? "Tollgate:SignInMaxFailuresPerAccount must be between 1 and 1000"
        : SignInMaxFailuresPerAddress is < 1 or > 100_000 ? "Tollgate:SignInMaxFailuresPerAddress must be between 1 and 100000"
        : SignInThrottleWindowSeconds is < 1 or > 86_400 ? "Tollgate:SignInThrottleWindowSeconds must be between 1 and 86400"
        : DeviceCodeLifetimeSeconds is < 60 or > 3600 ? "Tollgate:DeviceCodeLifetimeSeconds must be between 60 and 3600"
        : DeviceCodePollIntervalSeconds is < 1 or > 60 ? "Tollgate:DeviceCodePollIntervalSeconds must be between 1 and 60"
        : PruneIntervalSeconds is < 0 or > 86_400 ? "Tollgate:PruneIntervalSeconds must be between 0 (off) and 86400"
        : PruneBatchSize is < 10 or > 100_000 ? "Tollgate:PruneBatchSize must be between 10 and 100000"
        : PruneRetentionSeconds < RotationGraceSeconds || PruneRetentionSeconds > 366 * 86_400
            ? "Tollgate:PruneRetentionSeconds must be at least Tollgate:RotationGraceSeconds (a token inside its grace window must not vanish) and at most a year"
        : null;
}

internal static class TollgateConfigurationSources
{
    /// <summary><c>tollgate.json</c> in the working directory, then environment variables (<c>Tollgate__AccessTokenLifetimeSeconds</c>).</summary>
    public static IConfigurationBuilder AddTollgateSources(this IConfigurationBuilder builder) =>
        builder.AddJsonFile(Path.Combine(Directory.GetCurrentDirectory(), "tollgate.json"), optional: true).AddEnvironmentVariables();
}
