using System.Collections.Frozen;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Tollgate.Server.Audit;
using Tollgate.Server.Grants;
using Tollgate.Server.Hardening;
using Tollgate.Server.Protocol;
using Tollgate.Server.Telemetry;

namespace Tollgate.Server.Endpoints;

/// <summary>
/// <c>POST /auth/o2/token</c>: read the request, authenticate the client, hand it to its grant.
/// Each step returns a protocol error as a value; the first one ends the request.
/// </summary>
internal sealed class TokenEndpoint(
    ClientAuthentication clientAuthentication,
    IEnumerable<IGrant> grants,
    ClientRateLimits rateLimits,
    AuditTrail audit,
    TollgateOptions options,
    TokenActivity tokenActivity,
    ILogger<TokenEndpoint> logger)
{
    private readonly FrozenDictionary<string, IGrant> _grants = grants.ToFrozenDictionary(g => g.GrantType, StringComparer.Ordinal);

    public async Task HandleAsync(HttpContext http)
    {
        long started = Stopwatch.GetTimestamp();
        using var activity = TollgateTelemetry.Source.StartActivity("token");
        var (result, grantType, clientId) = await ProcessAsync(http, http.RequestAborted);
        tokenActivity.Record(clientId, issued: result.Tokens is not null);
        string grantTag = TollgateTelemetry.GrantTag(grantType);
        if (result.Tokens is { } tokens)
        {
            await ProtocolResponse.WriteTokensAsync(http, tokens);
            TollgateTelemetry.TokensIssued.Add(1, new KeyValuePair<string, object?>("grant_type", grantTag));
            Record(activity, started, grantTag, "ok", http);
            return;
        }
        var error = result.Error!;
        if (error.Audit is { } note)
        {
            audit.Record(http, note.Event, http.Items[ClientIdItem] as string, note.UserId, note.Detail);
            logger.LogWarning("Token request {RequestId} refused: {Error} ({Event})", http.TraceIdentifier, error.Error, note.Event);
        }
        else
        {
            logger.LogInformation("Token request {RequestId} refused: {Error} ({Status})", http.TraceIdentifier, error.Error, error.Status);
        }
        await ProtocolResponse.WriteErrorAsync(http, error);
        Record(activity, started, grantTag, error.Error, http);
    }

    private const string ClientIdItem = "tollgate.client_id";

    private static void Record(Activity? activity, long started, string grantTag, string outcome, HttpContext http)
    {
        TollgateTelemetry.TokenDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds,
            new KeyValuePair<string, object?>("grant_type", grantTag), new KeyValuePair<string, object?>("outcome", outcome));
        if (activity is not null)
        {
            activity.SetTag("tollgate.grant_type", grantTag);
            activity.SetTag("tollgate.outcome", outcome);
            activity.SetTag("tollgate.request_id", http.TraceIdentifier);
            activity.SetTag("tollgate.client_id", http.Items[ClientIdItem] as string);
        }
    }

    /// <summary>
    /// The answer, the grant type (for metrics) and the client it concerns (for the console's activity
    /// chart; the claimed one when authentication failed) when they are known.
    /// </summary>
    // Pooled: this runs on every token request, and a pooled builder reuses its state machine box instead of
    // allocating one (docs/performance.md, "Fewer allocations per request", has the bytes per request).
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<(GrantResult Result, string? GrantType, string? ClientId)> ProcessAsync(HttpContext http, CancellationToken ct)
    {
        // 1. A well-formed body of a supported type and size.
        var (request, readError) = await TokenRequestReader.ReadAsync(http.Request, options.MaxTokenRequestBytes, ct);
        if (readError is not null)
        {
            return (readError, null, null);
        }

        // 2. A grant type we implement.
        if (request!.GrantType is not { } grantType)
        {
            return (OAuthError.InvalidRequest(
                "The parameter grant_type is missing; use authorization_code, refresh_token, client_credentials or device_code."), null, null);
        }
        if (!_grants.TryGetValue(grantType, out var grant))
        {
            return (OAuthError.UnsupportedGrantType(TokenRequestReader.Printable(grantType)), grantType, request.ClientId);
        }

        // 3. An address that has not used up its failed-authentication budget (secret guessing), then an
        //    authenticated client (RFC 6749 §3.2.1). Failures are counted and audited.
        //    LWA's devices poll with their codes alone: the code pair names its client.
        var address = http.Connection.RemoteIpAddress;
        if (rateLimits.CheckFailures(address) is { } throttled)
        {
            return (throttled, grantType, request.ClientId);
        }
        if (grant is DeviceCodeGrant device && request.ClientId is null && http.Request.Headers.Authorization.Count == 0)
        {
            var (deviceResult, deviceClientId) = await device.HandleWithoutClientAsync(request, ct);
            return (deviceResult, grantType, deviceClientId);
        }
        var (client, authError) = await clientAuthentication.AuthenticateAsync(http, request, ct);
        if (authError is not null)
        {
            if (authError.Status == StatusCodes.Status401Unauthorized)
            {
                rateLimits.RecordFailure(address);
                audit.Record(http, AuditEvents.ClientAuthenticationFailed, request.ClientId ?? BasicClientId(http), null, authError.Description);
            }
            return (authError, grantType, request.ClientId);
        }
        http.Items[ClientIdItem] = client!.ClientId;

        // 4. A client within its rate limit.
        if (rateLimits.TryAcquire(client) is { } overLimit)
        {
            return (overLimit, grantType, client.ClientId);
        }

        // 5. A client allowed this grant type.
        if (!grant.IsAllowedFor(client))
        {
            return (OAuthError.UnauthorizedClient($"This security profile may not use the {grantType} grant (public clients cannot)."), grantType, client.ClientId);
        }

        // 6. The grant's own checks.
        return (await grant.HandleAsync(request, client, ct), grantType, client.ClientId);
    }

    /// <summary>For the audit trail only: who a failed Basic header claimed to be (the secret is never looked at).</summary>
    private static string? BasicClientId(HttpContext http)
    {
        string? header = http.Request.Headers.Authorization;
        if (header is null || !header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        Span<byte> decoded = stackalloc byte[1024];
        if (!Convert.TryFromBase64String(header[6..].Trim(), decoded, out int length))
        {
            return null;
        }
        int colon = decoded[..length].IndexOf((byte)':');
        if (colon <= 0 || !System.Text.Unicode.Utf8.IsValid(decoded[..colon]))
        {
            return null;
        }
        try
        {
            return Uri.UnescapeDataString(System.Text.Encoding.UTF8.GetString(decoded[..colon]));
        }
        catch (UriFormatException)
        {
            return null;
        }
    }
}
