using Microsoft.AspNetCore.Http;
using Tollgate.Server.Protocol;

namespace Tollgate.Server.Endpoints;

/// <summary>
/// <c>GET /auth/o2/tokeninfo?access_token=...</c>, as Login with Amazon answers it:
/// <c>{"iss","user_id","aud","app_id","exp","iat"}</c> where <c>exp</c> is the seconds remaining.
/// Resource servers must compare <c>aud</c> with their own client id.
/// </summary>
internal sealed class TokenInfoEndpoint(AccessTokenValidator validator, TimeProvider time, TollgateOptions options)
{
    public async Task HandleAsync(HttpContext http)
    {
        // 1. Exactly one access_token parameter.
        var values = http.Request.Query["access_token"];
        if (values.Count > 1)
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.InvalidRequest("The parameter access_token appears more than once."));
            return;
        }
        if (values.Count == 0 || string.IsNullOrEmpty(values[0]))
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.InvalidRequest("The parameter access_token is missing: GET /auth/o2/tokeninfo?access_token=Atza|..."));
            return;
        }

        // 2. A token that is good right now.
        var (claims, profile, problem) = await validator.ValidateAsync(values[0]!, http.RequestAborted);
        if (problem is not null)
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.InvalidToken($"The request has an invalid parameter : access_token. {problem}"));
            return;
        }

        // 3. What it says.
        var now = time.GetUtcNow();
        var state = (claims: claims!, appId: profile!.AppId, issuer: options.Issuer ?? $"{http.Request.Scheme}://{http.Request.Host}",
            remaining: (long)Math.Ceiling((claims!.ExpiresAt - now).TotalSeconds));
        await ProtocolResponse.WriteJsonAsync(http, StatusCodes.Status200OK, state, static (json, s) =>
        {
            json.WriteString("iss"u8, s.issuer);
            if (s.claims.UserId.Length > 0)
            {
                json.WriteString("user_id"u8, s.claims.UserId);
            }
            json.WriteString("aud"u8, s.claims.ClientId);
            json.WriteString("app_id"u8, s.appId);
            json.WriteNumber("exp"u8, s.remaining);
            json.WriteNumber("iat"u8, s.claims.IssuedAt.ToUnixTimeSeconds());
            json.WriteString("scope"u8, s.claims.Scope);
        });
    }
}
