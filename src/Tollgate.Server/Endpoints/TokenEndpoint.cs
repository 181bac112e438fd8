using System.Collections.Frozen;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Tollgate.Server.Grants;
using Tollgate.Server.Protocol;

namespace Tollgate.Server.Endpoints;

/// <summary>
/// <c>POST /auth/o2/token</c>: read the request, authenticate the client, hand it to its grant.
/// Each step returns a protocol error as a value; the first one ends the request.
/// </summary>
internal sealed class TokenEndpoint(
    ClientAuthentication clientAuthentication,
    IEnumerable<IGrant> grants,
    TollgateOptions options,
    TokenActivity activity,
    ILogger<TokenEndpoint> logger)
{
    private readonly FrozenDictionary<string, IGrant> _grants = grants.ToFrozenDictionary(g => g.GrantType, StringComparer.Ordinal);

    public async Task HandleAsync(HttpContext http)
    {
        var (result, clientId) = await ProcessAsync(http, http.RequestAborted);
        activity.Record(clientId, issued: result.Tokens is not null);
        if (result.Tokens is { } tokens)
        {
            await ProtocolResponse.WriteTokensAsync(http, tokens);
            return;
        }
        var error = result.Error!;
        logger.LogInformation("Token request {RequestId} refused: {Error} ({Status})", http.TraceIdentifier, error.Error, error.Status);
        await ProtocolResponse.WriteErrorAsync(http, error);
    }

    /// <summary>The answer, and the client it concerns (for the console's activity chart) when one is known.</summary>
    private async ValueTask<(GrantResult Result, string? ClientId)> ProcessAsync(HttpContext http, CancellationToken ct)
    {
        // 1. A well-formed body of a supported type and size.
        var (request, readError) = await TokenRequestReader.ReadAsync(http.Request, options.MaxTokenRequestBytes, ct);
        if (readError is not null)
        {
            return (readError, null);
        }

        // 2. A grant type we implement.
        if (request!.GrantType is not { } grantType)
        {
            return (OAuthError.InvalidRequest(
                "The parameter grant_type is missing; use authorization_code, refresh_token, client_credentials or device_code."), null);
        }
        if (!_grants.TryGetValue(grantType, out var grant))
        {
            return (OAuthError.UnsupportedGrantType(TokenRequestReader.Printable(grantType)), request.ClientId);
        }

        // 3. An authenticated client (RFC 6749 §3.2.1). LWA's devices poll with their codes alone: the pair names its client.
        if (grant is DeviceCodeGrant device && request.ClientId is null && http.Request.Headers.Authorization.Count == 0)
        {
            return await device.HandleWithoutClientAsync(request, ct);
        }
        var (client, authError) = await clientAuthentication.AuthenticateAsync(http, request, ct);
        if (authError is not null)
        {
            return (authError, request.ClientId);
        }

        // 4. A client allowed this grant type.
        if (!grant.IsAllowedFor(client!))
        {
            return (OAuthError.UnauthorizedClient($"This security profile may not use the {grantType} grant (public clients cannot)."), client!.ClientId);
        }

        // 5. The grant's own checks.
        return (await grant.HandleAsync(request, client!, ct), client!.ClientId);
    }
}
