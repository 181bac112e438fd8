using System.Net;

namespace Tollgate.Client;

/// <summary>
/// The token endpoint answered with an OAuth 2.0 error (<c>{"error": ..., "error_description": ..., "request_id": ...}</c>),
/// or with a response that is not a valid token response. Transient failures (429, 5xx) have already been retried when
/// this is thrown.
/// </summary>
public class TokenErrorException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="statusCode">HTTP status of the response.</param>
    /// <param name="error">The OAuth <c>error</c> code, or <c>invalid_response</c> when the body had none.</param>
    /// <param name="errorDescription">The <c>error_description</c>, if any.</param>
    /// <param name="requestId">The <c>request_id</c> from the body or the <c>x-amzn-RequestId</c> header, if any.</param>
    public TokenErrorException(HttpStatusCode statusCode, string error, string? errorDescription, string? requestId)
        : base(Format(statusCode, error, errorDescription, requestId))
    {
        StatusCode = statusCode;
        Error = error;
        ErrorDescription = errorDescription;
        RequestId = requestId;
    }

    /// <summary>HTTP status of the response.</summary>
    public HttpStatusCode StatusCode { get; }

    /// <summary>The OAuth <c>error</c> code, such as <c>invalid_client</c>; <c>invalid_response</c> when the server sent no error code.</summary>
    public string Error { get; }

    /// <summary>The human-readable <c>error_description</c>, if the server sent one.</summary>
    public string? ErrorDescription { get; }

    /// <summary>The request id operators search their logs for (body <c>request_id</c> or header <c>x-amzn-RequestId</c>).</summary>
    public string? RequestId { get; }

    private static string Format(HttpStatusCode statusCode, string error, string? description, string? requestId)
    {
        var text = $"Token endpoint answered {(int)statusCode} {error}";
        if (!string.IsNullOrEmpty(description))
            text += $": {description}";
        if (!string.IsNullOrEmpty(requestId))
            text += $" (request id {requestId})";
        return text;
    }
}

/// <summary>
/// The server answered <c>invalid_grant</c>: the authorization code or refresh token is no longer valid, so the user
/// has to authorize the application again (for the CLI: <c>tollgate login</c>). Never retried.
/// </summary>
public sealed class ReauthorizationRequiredException : TokenErrorException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="statusCode">HTTP status of the response (400).</param>
    /// <param name="errorDescription">The <c>error_description</c>, if any.</param>
    /// <param name="requestId">The request id, if any.</param>
    public ReauthorizationRequiredException(HttpStatusCode statusCode, string? errorDescription, string? requestId)
        : base(statusCode, "invalid_grant", errorDescription, requestId)
    {
    }
}
