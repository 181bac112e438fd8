using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Grants;

/// <summary>
/// <c>grant_type=client_credentials</c> (RFC 6749 §4.4; Amazon's "grantless" operations): an access token
/// for the application itself, for scopes registered on its security profile. No refresh token
/// (RFC 6749 §4.4.3) and no database write.
/// </summary>
internal sealed class ClientCredentialsGrant(AccessTokenIssuer issuer) : IGrant
{
    public string GrantType => "client_credentials";

    /// <summary>A public client cannot keep a secret, so it cannot act as itself.</summary>
    public bool IsAllowedFor(Profile client) => !client.IsPublic;

    public ValueTask<GrantResult> HandleAsync(TokenRequest request, Profile client, CancellationToken ct) =>
        ValueTask.FromResult(Handle(request, client));

    private GrantResult Handle(TokenRequest request, Profile client)
    {
        // 1. A scope is required (RFC 6749 §3.3 lets us refuse rather than guess a default).
        if (request.Scope is null)
        {
            return OAuthError.InvalidScope("The parameter scope is missing; client_credentials needs a scope, e.g. scope=videocentral::reporting.");
        }
        if (!Scope.TryParse(request.Scope, out var scope, out var problem))
        {
            return OAuthError.InvalidScope($"The scope parameter is malformed: {problem}.");
        }

        // 2. Every scope must be registered for this profile; user scopes mean nothing without a user.
        var unregistered = scope.Outside(client.RegisteredScopes.Contains).ToList();
        if (unregistered.Count > 0)
        {
            return OAuthError.InvalidScope(
                $"The scope {string.Join(' ', unregistered)} is not registered for this security profile "
                + "(register it with: tollgate profile create --scope SCOPE).");
        }

        // 3. The token: no user, no grant (grant id 0); it lives as long as its profile does.
        return issuer.Issue(client.ClientId, userId: "", scope.Value, grantId: 0, refreshToken: null, echoScope: true);
    }
}
