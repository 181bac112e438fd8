using Tollgate.Server.Crypto;
using Tollgate.Server.Protocol;

namespace Tollgate.Server.Grants;

/// <summary>Mints the access token every grant ends with; lifetimes come from configuration, time from the injected clock.</summary>
internal sealed class AccessTokenIssuer(AccessTokenCodec codec, TimeProvider time, TollgateOptions options)
{
    public IssuedTokens Issue(string clientId, string userId, string scope, long grantId, string? refreshToken, bool echoScope)
    {
        var now = time.GetUtcNow();
        var claims = new AccessTokenClaims(clientId, userId, scope, grantId, now, now + options.AccessTokenLifetime);
        return new IssuedTokens(codec.Seal(claims), options.AccessTokenLifetimeSeconds, refreshToken, echoScope ? scope : null);
    }
}
