namespace Tollgate.Client;

/// <summary>Where and as whom a <see cref="TokenClient"/> asks for tokens.</summary>
public sealed class TokenClientOptions
{
    /// <summary>The token endpoint, for example <see cref="TokenEndpoints.NorthAmerica"/> or <c>http://127.0.0.1:5000/auth/o2/token</c>.</summary>
    public Uri TokenEndpoint { get; set; } = TokenEndpoints.NorthAmerica;

    /// <summary>The security profile's client id (<c>amzn1.application-oa2-client.…</c>).</summary>
    public string ClientId { get; set; } = "";

    /// <summary>The client secret; <see langword="null"/> for public clients, which send only <c>client_id</c>.</summary>
    public string? ClientSecret { get; set; }
}

/// <summary>
/// How token requests are retried on throttling (429), server errors (5xx), timeouts and connection failures.
/// Delays grow exponentially with jitter; a <c>Retry-After</c> header, when present, is honoured instead (up to
/// <see cref="MaxRetryAfter"/>). Other 4xx answers, <c>invalid_grant</c> among them, are never retried.
/// </summary>
public sealed class TokenRetryOptions
{
    /// <summary>How many times a failed attempt is retried. Default 4.</summary>
    public int MaxRetryAttempts { get; set; } = 4;

    /// <summary>The first backoff delay; it doubles on each retry (with jitter). Default 100 ms, as Amazon's SDKs do.</summary>
    public TimeSpan BaseDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Longest backoff delay between two attempts. Default 10 s.</summary>
    public TimeSpan MaxDelay { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Longest <c>Retry-After</c> the client waits for; a longer one is shortened to this. Default 30 s.</summary>
    public TimeSpan MaxRetryAfter { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Timeout of one attempt. Default 30 s.</summary>
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(30);
}
