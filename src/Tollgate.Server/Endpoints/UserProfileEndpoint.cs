using Microsoft.AspNetCore.Http;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Endpoints;

/// <summary>
/// <c>GET /user/profile</c>: the signed-in user's id, and name and email when the token's scope
/// includes <c>profile</c>. The token may come as <c>Authorization: Bearer</c>, <c>?access_token=</c>
/// or <c>x-amz-access-token</c>, but only one way at a time (RFC 6750 §2).
/// </summary>
internal sealed class UserProfileEndpoint(AccessTokenValidator validator, ITokenStore store)
{
    public async Task HandleAsync(HttpContext http)
    {
        // 1. Exactly one access token, sent one way.
        var (token, locateError) = LocateToken(http.Request);
        if (locateError is not null)
        {
            await Refuse(http, locateError);
            return;
        }

        // 2. A token that is good right now.
        var (claims, _, problem) = await validator.ValidateAsync(token!, http.RequestAborted);
        if (problem is not null)
        {
            await Refuse(http, new OAuthError("invalid_token", problem, 401));
            return;
        }

        // 3. Issued for a user, with a scope that lets us show them.
        bool full = false, idOnly = false;
        foreach (var scope in claims!.Scope.Split(' '))
        {
            full |= scope == "profile";
            idOnly |= scope is "profile:user_id" or "postal_code";
        }
        if (claims.UserId.Length == 0 || !(full || idOnly))
        {
            await Refuse(http, new OAuthError("insufficient_scope",
                "This access token does not grant the profile or profile:user_id scope" + (claims.UserId.Length == 0 ? " (client-credentials tokens have no user)." : "."), 403));
            return;
        }
        var user = await store.FindUserByUserIdAsync(claims.UserId, http.RequestAborted);
        if (user is null)
        {
            await Refuse(http, new OAuthError("invalid_token", "The user of this access token no longer exists.", 401));
            return;
        }

        // 4. The profile.
        await ProtocolResponse.WriteJsonAsync(http, StatusCodes.Status200OK, (user, full), static (json, s) =>
        {
            json.WriteString("user_id"u8, s.user.UserId);
            if (s.full)
            {
                json.WriteString("name"u8, s.user.Name);
                json.WriteString("email"u8, s.user.Email);
            }
        });
    }

    private static (string? Token, OAuthError? Error) LocateToken(HttpRequest request)
    {
        string? fromHeader = null;
        var authorization = request.Headers.Authorization;
        if (authorization.Count > 1)
        {
            return (null, OAuthError.InvalidRequest("Send one Authorization header."));
        }
        if (authorization.Count == 1)
        {
            string value = authorization[0]!;
            if (!value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                return (null, new OAuthError("invalid_request", "The Authorization header must use the Bearer scheme.", 401));
            }
            fromHeader = value[7..].Trim();
        }
        var amz = request.Headers["x-amz-access-token"];
        var query = request.Query["access_token"];
        if (amz.Count > 1 || query.Count > 1)
        {
            return (null, OAuthError.InvalidRequest("The access token appears more than once."));
        }
        string?[] found = [fromHeader, amz.Count == 1 ? amz[0] : null, query.Count == 1 ? query[0] : null];
        var present = found.Where(t => !string.IsNullOrEmpty(t)).ToList();
        return present.Count switch
        {
            0 => (null, new OAuthError("invalid_request",
                "No access token: send Authorization: Bearer Atza|..., x-amz-access-token, or ?access_token=.", 401)),
            1 => (present[0], null),
            _ => (null, OAuthError.InvalidRequest("The access token was sent in more than one way; use exactly one (RFC 6750 §2).")),
        };
    }

    /// <summary>RFC 6750 §3: a 401 from a protected resource carries a Bearer challenge.</summary>
    private static Task Refuse(HttpContext http, OAuthError error)
    {
        if (error.Status == 401)
        {
            http.Response.Headers.WWWAuthenticate = $"Bearer realm=\"tollgate\", error=\"{error.Error}\"";
        }
        return ProtocolResponse.WriteErrorAsync(http, error);
    }
}
