namespace Tollgate.Server.Protocol;

/// <summary>
/// A protocol error as a value (RFC 6749 §5.2): handlers return it, one writer turns it into JSON
/// with the right status. Never thrown: a refused request is an expected outcome, not a failure.
/// </summary>
internal sealed record OAuthError(string Error, string Description, int Status)
{
    /// <summary>Send <c>WWW-Authenticate: Basic</c> with a 401 (RFC 6749 §5.2, when Basic was tried).</summary>
    public bool ChallengeBasic { get; init; }

    /// <summary>Send <c>Retry-After</c> (seconds) with a 429 or 503.</summary>
    public int? RetryAfterSeconds { get; init; }

    /// <summary>
    /// The security event this refusal is (a replayed code, a revoked token family), for the audit trail.
    /// The endpoint that writes the error records it with the request's time, address and request id.
    /// </summary>
    public AuditNote? Audit { get; init; }

    public static OAuthError InvalidRequest(string description) => new("invalid_request", description, 400);

    public static OAuthError InvalidClient(string description, bool challengeBasic = false) =>
        new("invalid_client", description, 401) { ChallengeBasic = challengeBasic };

    /// <summary>Amazon's wording: "The request has an invalid grant parameter : code".</summary>
    public static OAuthError InvalidGrant(string parameter, string why) =>
        new("invalid_grant", $"The request has an invalid grant parameter : {parameter}. {why}", 400);

    public static OAuthError UnauthorizedClient(string description) => new("unauthorized_client", description, 400);

    public static OAuthError UnsupportedGrantType(string grantType) => new(
        "unsupported_grant_type",
        $"The authorization grant type is not supported by the authorization server: '{grantType}'. "
        + "Use authorization_code, refresh_token or client_credentials.",
        400);

    public static OAuthError InvalidScope(string description) => new("invalid_scope", description, 400);

    public static OAuthError InvalidToken(string description) => new("invalid_token", description, 400);

    public static OAuthError TooLarge(int limit) =>
        new("invalid_request", $"The request body is larger than {limit} bytes; a token request is a few hundred.", 413);

    public static OAuthError TemporarilyUnavailable(string description) =>
        new("temporarily_unavailable", description, 503) { RetryAfterSeconds = 1 };

    /// <summary>
    /// Throttled. RFC 6749 defines no code for 429; <c>slow_down</c> is the token endpoint's "retry later, less often"
    /// from RFC 8628 §3.5, and clients key on the status and <c>Retry-After</c> anyway (Amazon's SDKs back off on 429).
    /// </summary>
    public static OAuthError TooManyRequests(string description, int retryAfterSeconds) =>
        new("slow_down", description, 429) { RetryAfterSeconds = Math.Max(1, retryAfterSeconds) };

    public static OAuthError ServerError() =>
        new("server_error", "The server met an unexpected condition; retry later and quote the request_id if it persists.", 500);
}

/// <summary>What the audit trail should remember about a refusal: which event, whose, and why (never a token or secret).</summary>
internal sealed record AuditNote(string Event, string? UserId, string Detail);
