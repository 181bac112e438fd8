using Tollgate.Server.Crypto;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Grants;

/// <summary><c>grant_type=authorization_code</c> (RFC 6749 §4.1.3, PKCE per RFC 7636).</summary>
internal sealed class AuthorizationCodeGrant(ITokenStore store, AccessTokenIssuer issuer, ProfileCache cache, TimeProvider time) : IGrant
{
    private const int MaxCodeLength = 512;

    public string GrantType => "authorization_code";

    public bool IsAllowedFor(Profile client) => true;

    public async ValueTask<GrantResult> HandleAsync(TokenRequest request, Profile client, CancellationToken ct)
    {
        // 1. The request names a code and the redirect URI it was obtained with.
        if (request.Code is not { } codeValue)
        {
            return OAuthError.InvalidRequest("The parameter code is missing: send the authorization code the user's browser brought back.");
        }
        if (request.RedirectUri is not { } redirectUri)
        {
            return OAuthError.InvalidRequest("The parameter redirect_uri is missing: send the same redirect_uri that was used to obtain the code.");
        }

        // 2. The code exists and belongs to this client. One answer for both, so a client cannot probe other clients' codes.
        var codeHash = codeValue.Length <= MaxCodeLength ? Secrets.StoreKey(codeValue) : null;
        var code = codeHash is null ? null : await store.FindCodeAsync(codeHash, ct);
        if (code is null || code.ProfileRowId != client.RowId)
        {
            return OAuthError.InvalidGrant("code", "The code is unknown, or was issued to another client.");
        }

        // 3. A code is used once. A second use means it leaked: go straight to redemption, where the
        //    store sees the replay and revokes what the first use obtained (RFC 6749 §4.1.2), since we
        //    cannot tell which of the two callers is the thief.
        if (code.Redeemed)
        {
            return await RedeemAsync(codeHash!, code, client, ct);
        }

        // 4. It has not expired (Amazon: 5 minutes).
        var now = time.GetUtcNow();
        if (now >= code.ExpiresAt)
        {
            return OAuthError.InvalidGrant("code", "The code has expired (codes are valid for 5 minutes); ask the user to authorize again.");
        }

        // 5. The redirect URI matches the one the code was sent to (RFC 6749 §4.1.3), exactly.
        if (!string.Equals(redirectUri, code.RedirectUri, StringComparison.Ordinal))
        {
            return OAuthError.InvalidGrant("redirect_uri", "It must equal the redirect_uri of the authorization request that produced this code.");
        }

        // 6. PKCE, both ways: a code bound to a challenge needs the matching verifier, and a verifier for a
        //    code issued without a challenge is refused, which stops PKCE downgrade attacks (RFC 9700 §2.1.1).
        if (CheckPkce(code, request.CodeVerifier) is { } pkceError)
        {
            return pkceError;
        }

        // 7. Redeem.
        return await RedeemAsync(codeHash!, code, client, ct);
    }

    /// <summary>Atomic in the store: if another request redeemed the code a moment ago, this one is the replay.</summary>
    private async ValueTask<GrantResult> RedeemAsync(byte[] codeHash, AuthorizationCode code, Profile client, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        string refreshToken = Secrets.NewRefreshToken(now);
        var redemption = await store.RedeemCodeAsync(codeHash, Secrets.StoreKey(refreshToken), now, ct);
        return redemption.Outcome switch
        {
            CodeRedemptionOutcome.Redeemed => issuer.Issue(client.ClientId, code.UserId, code.Scope, redemption.GrantId, refreshToken, echoScope: false),
            CodeRedemptionOutcome.Replayed => Replayed() with
            {
                Audit = new AuditNote(Audit.AuditEvents.CodeReplay, code.UserId, $"authorization code replayed; grant {redemption.GrantId} revoked"),
            },
            _ => OAuthError.InvalidGrant("code", "The code is unknown, or was issued to another client."),
        };
    }

    private static OAuthError? CheckPkce(AuthorizationCode code, string? verifier)
    {
        if (code.CodeChallenge is null)
        {
            return verifier is null
                ? null
                : OAuthError.InvalidGrant("code_verifier", "The code was issued without a code_challenge, so no code_verifier may be sent.");
        }
        if (verifier is null)
        {
            return OAuthError.InvalidGrant("code_verifier", "The code was issued with a PKCE code_challenge; send its code_verifier.");
        }
        // RFC 7636 §4.1: 43 to 128 characters from the unreserved set.
        if (verifier.Length is < 43 or > 128 || !verifier.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '~'))
        {
            return OAuthError.InvalidGrant("code_verifier", "A code_verifier is 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~' (RFC 7636 §4.1).");
        }
        return Secrets.VerifiesPkce(verifier, code.CodeChallenge, code.CodeChallengeMethod ?? "plain")
            ? null
            : OAuthError.InvalidGrant("code_verifier", "It does not match the code_challenge the code was issued with.");
    }

    private OAuthError Replayed()
    {
        cache.Invalidate();
        return CodeReplayed();
    }

    private static OAuthError CodeReplayed() => OAuthError.InvalidGrant(
        "code", "The code has already been used. Every token issued from it has been revoked (RFC 6749 §4.1.2); ask the user to authorize again.");
}
