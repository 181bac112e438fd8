using System.Diagnostics;
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
        //    client's, unused, and meets the request's terms (expiry, redirect URI, PKCE: RedemptionTerms), so a code is
        //    checked and consumed with no moment between for another request to use it.
        var now = time.GetUtcNow();
        var terms = new RedemptionTerms(redirectUri, request.CodeVerifier, now);
        string refreshToken = Secrets.NewRefreshToken(now);
        var redemption = await store.RedeemCodeAsync(Secrets.StoreKey(codeValue), Secrets.StoreKey(refreshToken), client.RowId, terms, ct);

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

            // The same pure check the store ran, run again to say which term failed.
            CodeRedemptionOutcome.Refused => Explain(terms.Check(redemption.Code!)),

            // Unknown and another client's code get one answer, so a client cannot probe other clients' codes.
            _ => UnknownCode(),
        };
    }

    private static OAuthError Explain(CodeRefusal refusal) => refusal switch
    {
        CodeRefusal.Expired => OAuthError.InvalidGrant("code", "The code has expired (codes are valid for 5 minutes); ask the user to authorize again."),
        CodeRefusal.RedirectUriMismatch => OAuthError.InvalidGrant("redirect_uri", "It must equal the redirect_uri of the authorization request that produced this code."),
        CodeRefusal.VerifierNotExpected => OAuthError.InvalidGrant("code_verifier", "The code was issued without a code_challenge, so no code_verifier may be sent."),
        CodeRefusal.VerifierMissing => OAuthError.InvalidGrant("code_verifier", "The code was issued with a PKCE code_challenge; send its code_verifier."),
        CodeRefusal.VerifierMalformed => OAuthError.InvalidGrant("code_verifier", "A code_verifier is 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~' (RFC 7636 §4.1)."),
        CodeRefusal.VerifierMismatch => OAuthError.InvalidGrant("code_verifier", "It does not match the code_challenge the code was issued with."),
        // The store answers Refused only for a code the terms refuse.
        _ => throw new UnreachableException($"a refused code that meets every term ({refusal})"),
    };

    private static OAuthError UnknownCode() => OAuthError.InvalidGrant("code", "The code is unknown, or was issued to another client.");

    private OAuthError Replayed()
    {
        cache.Invalidate();
        return CodeReplayed();
    }

    private static OAuthError CodeReplayed() => OAuthError.InvalidGrant(
        "code", "The code has already been used. Every token issued from it has been revoked (RFC 6749 §4.1.2); ask the user to authorize again.");
}
