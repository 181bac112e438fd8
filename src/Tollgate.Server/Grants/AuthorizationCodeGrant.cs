using System.Runtime.CompilerServices;
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

    // Pooled, as TokenEndpoint.ProcessAsync: one state machine box fewer to allocate per request of this grant.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
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

        // 2. A code longer than any we issue is not looked up at all.
        if (codeValue.Length > MaxCodeLength)
        {
            return UnknownCode();
        }

        // 3. One trip to the store, which reads the code and, in the same write, redeems it only if it is this
        //    client's, unused, and passes the request's checks (Refusal below), so a code is checked and consumed
        //    with no moment between for another request to use it.
        var now = time.GetUtcNow();
        string refreshToken = Secrets.NewRefreshToken(now);
        var redemption = await store.RedeemCodeAsync(
            Secrets.StoreKey(codeValue), Secrets.StoreKey(refreshToken), client.RowId, now,
            code => Refusal(code, redirectUri, request.CodeVerifier, now) is null, ct);

        return redemption.Outcome switch
        {
            CodeRedemptionOutcome.Redeemed => issuer.Issue(
                client.ClientId, redemption.Code!.UserId, redemption.Code.Scope, redemption.GrantId, refreshToken, echoScope: false),

            // A code is used once. A second use means it leaked: the store has revoked what the first use obtained
            // (RFC 6749 §4.1.2), since we cannot tell which of the two callers is the thief. This comes before every
            // other check, so a thief cannot dodge the revocation by sending a wrong redirect_uri or verifier.
            CodeRedemptionOutcome.Replayed => Replayed() with
            {
                Audit = new AuditNote(Audit.AuditEvents.CodeReplay, redemption.Code!.UserId, $"authorization code replayed; grant {redemption.GrantId} revoked"),
            },

            // The same pure checks the store ran, run again to say which one failed.
            CodeRedemptionOutcome.Refused => Refusal(redemption.Code!, redirectUri, request.CodeVerifier, now)!,

            // Unknown and another client's code get one answer, so a client cannot probe other clients' codes.
            _ => UnknownCode(),
        };
    }

    /// <summary>Why this request may not redeem this (live, unredeemed) code, or null if it may. Pure: the store may run it.</summary>
    private static OAuthError? Refusal(AuthorizationCode code, string redirectUri, string? codeVerifier, DateTimeOffset now)
    {
        // a. It has not expired (Amazon: 5 minutes).
        if (now >= code.ExpiresAt)
        {
            return OAuthError.InvalidGrant("code", "The code has expired (codes are valid for 5 minutes); ask the user to authorize again.");
        }

        // b. The redirect URI matches the one the code was sent to (RFC 6749 §4.1.3), exactly.
        if (!string.Equals(redirectUri, code.RedirectUri, StringComparison.Ordinal))
        {
            return OAuthError.InvalidGrant("redirect_uri", "It must equal the redirect_uri of the authorization request that produced this code.");
        }

        // c. PKCE, both ways: a code bound to a challenge needs the matching verifier, and a verifier for a
        //    code issued without a challenge is refused, which stops PKCE downgrade attacks (RFC 9700 §2.1.1).
        return CheckPkce(code, codeVerifier);
    }

    private static OAuthError UnknownCode() => OAuthError.InvalidGrant("code", "The code is unknown, or was issued to another client.");

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
