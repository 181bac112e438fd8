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
    ILogger<TokenEndpoint> logger)
{
    private readonly FrozenDictionary<string, IGrant> _grants = grants.ToFrozenDictionary(g => g.GrantType, StringComparer.Ordinal);

    public async Task HandleAsync(HttpContext http)
    {
        var result = await ProcessAsync(http, http.RequestAborted);
        if (result.Tokens is { } tokens)
        {
            await ProtocolResponse.WriteTokensAsync(http, tokens);
            return;
        }
        var error = result.Error!;
        logger.LogInformation("Token request {RequestId} refused: {Error} ({Status})", http.TraceIdentifier, error.Error, error.Status);
        await ProtocolResponse.WriteErrorAsync(http, error);
    }

    private async ValueTask<GrantResult> ProcessAsync(HttpContext http, CancellationToken ct)
    {
        // 1. A well-formed body of a supported type and size.
        var (request, readError) = await TokenRequestReader.ReadAsync(http.Request, options.MaxTokenRequestBytes, ct);
        if (readError is not null)
        {
            return readError;
        }

        // 2. A grant type we implement.
        if (request!.GrantType is not { } grantType)
        {
            return OAuthError.InvalidRequest(
                "The parameter grant_type is missing; use authorization_code, refresh_token or client_credentials.");
        }
        if (!_grants.TryGetValue(grantType, out var grant))
        {
            return OAuthError.UnsupportedGrantType(TokenRequestReader.Printable(grantType));
        }

        // 3. An authenticated client (RFC 6749 §3.2.1).
        var (client, authError) = await clientAuthentication.AuthenticateAsync(http, request, ct);
        if (authError is not null)
        {
            return authError;
        }

        // 4. A client allowed this grant type.
        if (!grant.IsAllowedFor(client!))
        {
            return OAuthError.UnauthorizedClient($"This security profile may not use the {grantType} grant (public clients cannot).");
        }

        // 5. The grant's own checks.
        return await grant.HandleAsync(request, client!, ct);
    }
}
