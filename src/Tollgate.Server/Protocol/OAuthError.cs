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

    public static OAuthError ServerError() =>
        new("server_error", "The server met an unexpected condition; retry later and quote the request_id if it persists.", 500);
}
