using Tollgate.Server.Crypto;

namespace Tollgate.Server.Storage;

/// <summary>
/// What a code must be for one token request to redeem it, besides being this client's and unredeemed: unexpired, sent
/// to the same redirect URI (RFC 6749 §4.1.3), and answered by the request's PKCE verifier (RFC 7636 §4.6). Data, not a
/// callback, so that every store checks the same rule in the same step that consumes the code: SQLite on its writer
/// with <see cref="Check"/>, PostgreSQL inside the statement that claims the code (its SQL mirrors <see cref="Check"/>
/// and <c>A_code_is_claimed_in_one_statement_exactly_when_the_terms_admit_it</c> holds the two together).
/// </summary>
internal sealed class RedemptionTerms
{
    public RedemptionTerms(string redirectUri, string? codeVerifier, DateTimeOffset now)
    {
        RedirectUri = redirectUri;
        CodeVerifier = codeVerifier;
        Now = now;
        VerifierWellFormed = codeVerifier is null || IsWellFormedVerifier(codeVerifier);
    }

    private string? _verifierS256;

    public string RedirectUri { get; }

    /// <summary>The request's <c>code_verifier</c>, null when it sent none.</summary>
    public string? CodeVerifier { get; }

    public DateTimeOffset Now { get; }

    /// <summary>No verifier, or one of the form RFC 7636 §4.1 allows.</summary>
    public bool VerifierWellFormed { get; }

    /// <summary>
    /// The S256 challenge of a well-formed verifier; null otherwise. Only PostgreSQL's claiming statement needs it, so it
    /// is hashed on first use: SQLite's writer checks with <see cref="Secrets.VerifiesPkce"/> and never asks.
    /// </summary>
    public string? VerifierS256 =>
        CodeVerifier is not null && VerifierWellFormed ? _verifierS256 ??= Secrets.PkceS256Challenge(CodeVerifier) : null;

    public bool Admits(AuthorizationCode code) => Check(code) == CodeRefusal.None;

    /// <summary>The first term <paramref name="code"/> fails, in the order the grant reports them; None if it meets them all.</summary>
    public CodeRefusal Check(AuthorizationCode code)
    {
        // a. It has not expired (Amazon: 5 minutes).
        if (Now >= code.ExpiresAt)
        {
            return CodeRefusal.Expired;
        }

        // b. The redirect URI is exactly the one the code was sent to.
        if (!string.Equals(RedirectUri, code.RedirectUri, StringComparison.Ordinal))
        {
            return CodeRefusal.RedirectUriMismatch;
        }

        // c. PKCE, both ways: a code bound to a challenge needs the matching verifier, and a verifier for a code issued
        //    without a challenge is refused, which stops PKCE downgrade attacks (RFC 9700 §2.1.1).
        if (code.CodeChallenge is null)
        {
            return CodeVerifier is null ? CodeRefusal.None : CodeRefusal.VerifierNotExpected;
        }
        if (CodeVerifier is null)
        {
            return CodeRefusal.VerifierMissing;
        }
        if (!VerifierWellFormed)
        {
            return CodeRefusal.VerifierMalformed;
        }
        return Secrets.VerifiesPkce(CodeVerifier, code.CodeChallenge, code.CodeChallengeMethod ?? "plain")
            ? CodeRefusal.None
            : CodeRefusal.VerifierMismatch;
    }

    /// <summary>RFC 7636 §4.1: 43 to 128 characters from the unreserved set.</summary>
    private static bool IsWellFormedVerifier(string verifier) =>
        verifier.Length is >= 43 and <= 128 && verifier.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '~');
}

/// <summary>Why a request may not redeem a live code (<see cref="RedemptionTerms.Check"/>).</summary>
internal enum CodeRefusal
{
    None,
    Expired,
    RedirectUriMismatch,
    VerifierNotExpected,
    VerifierMissing,
    VerifierMalformed,
    VerifierMismatch,
}
