using Tollgate.Server.Crypto;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Endpoints;

/// <summary>
/// Decides whether an access token is good right now, for tokeninfo and the profile endpoint:
/// authentic (AES-GCM tag), unexpired, its profile still exists, and its grant not revoked.
/// </summary>
internal sealed class AccessTokenValidator(AccessTokenCodec codec, ProfileCache profiles, TimeProvider time)
{
    public async ValueTask<(AccessTokenClaims? Claims, Profile? Profile, string? Problem)> ValidateAsync(string token, CancellationToken ct)
    {
        if (codec.Open(token) is not { } claims)
        {
            return (null, null, "The access token is malformed or was not issued by this server.");
        }
        if (time.GetUtcNow() >= claims.ExpiresAt)
        {
            return (null, null, "The access token has expired; refresh it.");
        }
        var profile = await profiles.FindAsync(claims.ClientId, ct);
        if (profile is null)
        {
            return (null, null, "The access token's security profile has been deleted.");
        }
        // Client-credentials tokens (grant 0) have no grant to revoke; they live as long as their profile.
        if (claims.GrantId != 0 && !await profiles.IsGrantActiveAsync(claims.GrantId, ct))
        {
            return (null, null, "The access token has been revoked.");
        }
        return (claims, profile, null);
    }
}
