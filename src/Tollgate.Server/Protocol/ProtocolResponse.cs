using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Tollgate.Server.Protocol;

/// <summary>Tokens a grant issued; <see cref="RefreshToken"/> and <see cref="Scope"/> are sent only when set.</summary>
internal sealed record IssuedTokens(string AccessToken, long ExpiresIn, string? RefreshToken, string? Scope);

/// <summary>What a grant handler returns: tokens, or the protocol error that refused them.</summary>
internal readonly struct GrantResult
{
    private GrantResult(IssuedTokens? tokens, OAuthError? error) => (Tokens, Error) = (tokens, error);

    public IssuedTokens? Tokens { get; }

    public OAuthError? Error { get; }

    public static implicit operator GrantResult(IssuedTokens tokens) => new(tokens, null);

    public static implicit operator GrantResult(OAuthError error) => new(null, error);
}

/// <summary>
/// Writes the protocol's JSON answers. Every answer carries the request id in the body (errors)
/// and in <c>x-amzn-RequestId</c>, and none may be cached (RFC 6749 §5.1: Cache-Control no-store, Pragma no-cache).
/// </summary>
internal static class ProtocolResponse
{
    public const string RequestIdHeader = "x-amzn-RequestId";
    private const string JsonContentType = "application/json;charset=UTF-8";

    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    public static Task WriteTokensAsync(HttpContext context, IssuedTokens tokens) =>
        WriteJsonAsync(context, StatusCodes.Status200OK, tokens, static (json, t) =>
        {
            json.WriteString("access_token"u8, t.AccessToken);
            if (t.RefreshToken is not null)
            {
                json.WriteString("refresh_token"u8, t.RefreshToken);
            }
            json.WriteString("token_type"u8, "bearer"u8);
            json.WriteNumber("expires_in"u8, t.ExpiresIn);
            if (t.Scope is not null)
            {
                json.WriteString("scope"u8, t.Scope);
            }
        });

    public static Task WriteErrorAsync(HttpContext context, OAuthError error)
    {
        Telemetry.TollgateTelemetry.Errors.Add(1,
            new KeyValuePair<string, object?>("error", error.Error), new KeyValuePair<string, object?>("status", error.Status));
        if (error.ChallengeBasic)
        {
            context.Response.Headers.WWWAuthenticate = "Basic realm=\"tollgate\", charset=\"UTF-8\"";
        }
        if (error.RetryAfterSeconds is { } seconds)
        {
            context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        return WriteJsonAsync(context, error.Status, (error, context.TraceIdentifier), static (json, e) =>
        {
            json.WriteString("error"u8, e.error.Error);
            json.WriteString("error_description"u8, e.error.Description);
            json.WriteString("request_id"u8, e.TraceIdentifier);
        });
    }

    public static async Task WriteJsonAsync<TState>(HttpContext context, int status, TState state, Action<Utf8JsonWriter, TState> writeMembers)
    {
        var response = context.Response;
        response.StatusCode = status;
        response.ContentType = JsonContentType;
        response.Headers.CacheControl = "no-store";
        response.Headers.Pragma = "no-cache";
        var json = t_writer ??= new Utf8JsonWriter(response.BodyWriter);
        json.Reset(response.BodyWriter);
        json.WriteStartObject();
        writeMembers(json, state);
        json.WriteEndObject();
        json.Flush();
        json.Reset();
        await response.BodyWriter.FlushAsync(context.RequestAborted);
    }
}
