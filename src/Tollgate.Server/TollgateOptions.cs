using Microsoft.Extensions.Configuration;

namespace Tollgate.Server;

/// <summary>Server settings, bound from the <c>Tollgate</c> configuration section (env: <c>Tollgate__Name</c>, <c>Tollgate__Limits__Name</c>).</summary>
/// <remarks>Every key is documented in <c>docs/configuration.md</c>; keep the two in step.</remarks>
internal sealed class TollgateOptions
{
    public const string Section = "Tollgate";

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

    /// <summary>Base64 of 32 random bytes that encrypts the keys kept in the store (AES-256-GCM). Unset: keys are stored in the clear.</summary>
    public string? MasterKey { get; set; }

    /// <summary>A file holding <see cref="MasterKey"/> (for container secrets); used when <see cref="MasterKey"/> is unset.</summary>
    public string? MasterKeyFile { get; set; }

    /// <summary>Master keys that were replaced: keys they encrypted are re-encrypted with <see cref="MasterKey"/> at start.</summary>
    public List<string> PreviousMasterKeys { get; set; } = [];

    public LimitOptions Limits { get; set; } = new();

    public RateLimitOptions RateLimits { get; set; } = new();

    public KeyOptions Keys { get; set; } = new();

    public TelemetryOptions Telemetry { get; set; } = new();

    /// <summary>
    /// Reads the <c>Tollgate</c> section; the server and the admin CLI read the same sources. An unknown key or a
    /// value of the wrong type is an error naming the key (a typo must not silently leave a default in force).
    /// </summary>
    public static TollgateOptions Load(IConfiguration configuration)
    {
        var options = new TollgateOptions();
        if (UnknownKey(configuration.GetSection(Section), typeof(TollgateOptions)) is { } unknown)
        {
            throw new TollgateConfigurationException($"{unknown} is not a setting (see docs/configuration.md for every key)");
        }
        try
        {
            configuration.GetSection(Section).Bind(options, binder => binder.ErrorOnUnknownConfiguration = true);
        }
        catch (InvalidOperationException e)
        {
            throw new TollgateConfigurationException(e.InnerException is null ? e.Message : $"{e.Message} ({e.InnerException.Message})");
        }
        return options;
    }

    /// <summary>The full path of the first key under <paramref name="section"/> that no property of <paramref name="type"/> binds.</summary>
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2070", Justification = "Options types are never trimmed.")]
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2072", Justification = "Options types are never trimmed.")]
    private static string? UnknownKey(IConfigurationSection section, Type type)
    {
        foreach (var child in section.GetChildren())
        {
            var property = type.GetProperty(child.Key, System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.IgnoreCase);
            if (property is null)
            {
                return child.Path;
            }
            bool nested = property.PropertyType.IsClass && property.PropertyType != typeof(string) && !property.PropertyType.IsGenericType;
            if (nested && UnknownKey(child, property.PropertyType) is { } deeper)
            {
                return deeper;
            }
        }
        return null;
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
        : MaxTokenRequestBytes > Limits.MaxRequestBodyBytes ? "Tollgate:MaxTokenRequestBytes must not exceed Tollgate:Limits:MaxRequestBodyBytes"
        : Issuer is { } issuer && !Uri.TryCreate(issuer, UriKind.Absolute, out _) ? "Tollgate:Issuer must be an absolute URL"
        : Crypto.MasterKeys.Problem(this)
            ?? Limits.Validate()
            ?? RateLimits.Validate()
            ?? Keys.Validate(AccessTokenLifetimeSeconds)
            ?? Telemetry.Validate();
}

/// <summary>Request limits and slow-client timeouts. Refusals below these limits are protocol JSON errors.</summary>
internal sealed class LimitOptions
{
    /// <summary>Sum of header names and values; more is 431 <c>invalid_request</c>.</summary>
    public int MaxRequestHeaderBytes { get; set; } = 16 * 1024;

    /// <summary>Number of request headers; more is 431 <c>invalid_request</c>.</summary>
    public int MaxRequestHeaderCount { get; set; } = 64;

    /// <summary>Path plus query string; longer is 414 <c>invalid_request</c>.</summary>
    public int MaxRequestTargetBytes { get; set; } = 4096;

    /// <summary>
    /// The most body bytes Kestrel takes on one request. Endpoints refuse far less (the token endpoint at
    /// <c>MaxTokenRequestBytes</c>, answering 413 at once); the rest of a too-large body is then discarded as it
    /// arrives so the client can read that answer, up to this size, beyond which the connection is closed.
    /// </summary>
    public int MaxRequestBodyBytes { get; set; } = 32 * 1024 * 1024;

    /// <summary>All request headers must arrive within this time (slowloris defence).</summary>
    public int RequestHeadersTimeoutSeconds { get; set; } = 10;

    /// <summary>A body arriving slower than this (after the grace period) is refused with 408 (slow-POST defence).</summary>
    public int MinRequestBodyBytesPerSecond { get; set; } = 240;

    public int RequestBodyGraceSeconds { get; set; } = 5;

    /// <summary>Idle keep-alive connections are closed after this time.</summary>
    public int KeepAliveTimeoutSeconds { get; set; } = 60;

    /// <summary>Open connections accepted at once; 0 is unlimited.</summary>
    public int MaxConcurrentConnections { get; set; }

    public string? Validate() =>
        MaxRequestHeaderBytes is < 1024 or > 256 * 1024 ? "Tollgate:Limits:MaxRequestHeaderBytes must be between 1024 and 262144"
        : MaxRequestHeaderCount is < 8 or > 1000 ? "Tollgate:Limits:MaxRequestHeaderCount must be between 8 and 1000"
        : MaxRequestTargetBytes is < 256 or > 64 * 1024 ? "Tollgate:Limits:MaxRequestTargetBytes must be between 256 and 65536"
        : MaxRequestBodyBytes is < 1024 or > 256 * 1024 * 1024 ? "Tollgate:Limits:MaxRequestBodyBytes must be between 1024 and 268435456"
        : RequestHeadersTimeoutSeconds is < 1 or > 300 ? "Tollgate:Limits:RequestHeadersTimeoutSeconds must be between 1 and 300"
        : MinRequestBodyBytesPerSecond is < 0 or > 1024 * 1024 ? "Tollgate:Limits:MinRequestBodyBytesPerSecond must be between 0 (off) and 1048576"
        : RequestBodyGraceSeconds is < 2 or > 300 ? "Tollgate:Limits:RequestBodyGraceSeconds must be between 2 and 300"
        : KeepAliveTimeoutSeconds is < 1 or > 3600 ? "Tollgate:Limits:KeepAliveTimeoutSeconds must be between 1 and 3600"
        : MaxConcurrentConnections is < 0 ? "Tollgate:Limits:MaxConcurrentConnections must be 0 (unlimited) or more"
        : null;
}

/// <summary>Throttling. Every limit is requests per minute with a burst of the same size; 0 turns a limit off.</summary>
internal sealed class RateLimitOptions
{
    /// <summary>Token requests per remote IP address. Off by default: behind a proxy or NAT many clients share one address.</summary>
    public int TokenRequestsPerIpPerMinute { get; set; }

    /// <summary>Token requests per authenticated client, unless its profile sets its own (<c>tollgate profile set-rate-limit</c>).</summary>
    public int TokenRequestsPerClientPerMinute { get; set; }

    /// <summary>Failed client authentications per remote IP before that address is refused for a while (secret guessing).</summary>
    public int FailedAuthenticationsPerIpPerMinute { get; set; } = 60;

    /// <summary>tokeninfo and user-profile requests per remote IP.</summary>
    public int ResourceRequestsPerIpPerMinute { get; set; }

    /// <summary>Sign-in attempts per remote IP, for the sign-in page's <c>sign-in</c> rate-limit policy.</summary>
    public int SignInAttemptsPerIpPerMinute { get; set; } = 20;

    public string? Validate()
    {
        foreach (var (name, value) in new[]
        {
            (nameof(TokenRequestsPerIpPerMinute), TokenRequestsPerIpPerMinute),
            (nameof(TokenRequestsPerClientPerMinute), TokenRequestsPerClientPerMinute),
            (nameof(FailedAuthenticationsPerIpPerMinute), FailedAuthenticationsPerIpPerMinute),
            (nameof(ResourceRequestsPerIpPerMinute), ResourceRequestsPerIpPerMinute),
            (nameof(SignInAttemptsPerIpPerMinute), SignInAttemptsPerIpPerMinute),
        })
        {
            if (value is < 0 or > 1_000_000)
            {
                return $"Tollgate:RateLimits:{name} must be between 0 (off) and 1000000";
            }
        }
        return null;
    }
}

/// <summary>The keys that seal access tokens: rotation schedule and how long a replaced key still opens tokens.</summary>
internal sealed class KeyOptions
{
    /// <summary>A new access-token key is made when the newest is this old.</summary>
    public int AccessTokenKeyRotationDays { get; set; } = 30;

    /// <summary>How often each node re-reads the key ring (and rotates it when due).</summary>
    public int RefreshSeconds { get; set; } = 300;

    public TimeSpan Refresh => TimeSpan.FromSeconds(RefreshSeconds);

    /// <summary>A new key is published this long before it is used, so every node has read it first.</summary>
    public TimeSpan ActivationDelay => 2 * Refresh;

    public string? Validate(int accessTokenLifetimeSeconds) =>
        AccessTokenKeyRotationDays is < 1 or > 3650 ? "Tollgate:Keys:AccessTokenKeyRotationDays must be between 1 and 3650"
        : RefreshSeconds is < 5 or > 3600 ? "Tollgate:Keys:RefreshSeconds must be between 5 and 3600"
        : AccessTokenKeyRotationDays * 86_400L <= 2L * RefreshSeconds + accessTokenLifetimeSeconds
            ? "Tollgate:Keys:AccessTokenKeyRotationDays is too short for Tollgate:Keys:RefreshSeconds and the access-token lifetime"
        : null;
}

/// <summary>Metrics, traces and logs.</summary>
internal sealed class TelemetryOptions
{
    /// <summary>Serve Prometheus metrics at <see cref="MetricsPath"/>.</summary>
    public bool PrometheusEnabled { get; set; } = true;

    public string MetricsPath { get; set; } = "/metrics";

    /// <summary>OTLP endpoint for traces (and metrics), e.g. http://127.0.0.1:4317; unset: no traces are recorded.</summary>
    public string? OtlpEndpoint { get; set; }

    /// <summary>Fraction of requests traced when <see cref="OtlpEndpoint"/> is set.</summary>
    public double TraceSampleRatio { get; set; } = 1.0;

    /// <summary><c>json</c> (one JSON object per line) or <c>simple</c> (human-readable) console logs.</summary>
    public string LogFormat { get; set; } = "json";

    public string? Validate() =>
        !MetricsPath.StartsWith('/') || MetricsPath.Length < 2 ? "Tollgate:Telemetry:MetricsPath must be a path like /metrics"
        : OtlpEndpoint is { } otlp && !(Uri.TryCreate(otlp, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https")
            ? "Tollgate:Telemetry:OtlpEndpoint must be an http(s) URL"
        : TraceSampleRatio is < 0 or > 1 ? "Tollgate:Telemetry:TraceSampleRatio must be between 0 and 1"
        : LogFormat is not ("json" or "simple") ? "Tollgate:Telemetry:LogFormat must be json or simple"
        : null;
}

/// <summary>A configuration value could not be read at all (unknown key, wrong type); the message names the key.</summary>
internal sealed class TollgateConfigurationException(string message) : Exception(message);

internal static class TollgateConfigurationSources
{
    /// <summary><c>tollgate.json</c> in the working directory, then environment variables (<c>Tollgate__AccessTokenLifetimeSeconds</c>).</summary>
    public static IConfigurationBuilder AddTollgateSources(this IConfigurationBuilder builder) =>
        builder.AddJsonFile(Path.Combine(Directory.GetCurrentDirectory(), "tollgate.json"), optional: true).AddEnvironmentVariables();
}
