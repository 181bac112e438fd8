using Tollgate.Server.Crypto;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Admin;

internal sealed record CodeRequest(
    string ClientId, string ReturnUrl, string UserEmail, string? Scope, string? CodeChallenge, string? CodeChallengeMethod);

/// <summary>
/// Minting an authorization code as if the user had just consented: what the authorization endpoint
/// does after sign-in, and what the admin CLI does for scripts and tests.
/// </summary>
internal static class AuthorizationCodes
{
    public static async Task<AdminResult<string>> IssueAsync(
        ITokenStore store, CodeRequest request, TimeProvider time, TollgateOptions options, CancellationToken ct)
    {
        // 1. A known profile, and a return URL registered on it (exact match, RFC 9700 §4.1.3).
        var profile = await store.FindProfileAsync(request.ClientId, ct);
        if (profile is null)
        {
            return AdminResult<string>.Refused($"no security profile has client id {request.ClientId}");
        }
        if (!profile.ReturnUrls.Contains(request.ReturnUrl, StringComparer.Ordinal))
        {
            return AdminResult<string>.Refused($"{request.ReturnUrl} is not an allowed return URL of this profile");
        }

        // 2. A known user.
        var user = await store.FindUserByEmailAsync(request.UserEmail, ct);
        if (user is null)
        {
            return AdminResult<string>.Refused($"no user has email {request.UserEmail}");
        }

        // 3. Scopes the profile may ask a user for: LWA's user scopes plus the profile's own.
        if (!Scope.TryParse(request.Scope ?? "profile", out var scope, out var problem))
        {
            return AdminResult<string>.Refused($"--scope is malformed: {problem}");
        }
        var unknown = scope.Outside(s => Scope.StandardUserScopes.Contains(s) || profile.RegisteredScopes.Contains(s)).ToList();
        if (unknown.Count > 0)
        {
            return AdminResult<string>.Refused($"scope {string.Join(' ', unknown)} is not available to this profile");
        }

        // 4. PKCE: well-formed if present, and mandatory for public clients (RFC 9700 §2.1.1).
        if (PkceProblem(request.CodeChallenge, request.CodeChallengeMethod, profile.IsPublic) is { } pkceProblem)
        {
            return AdminResult<string>.Refused(pkceProblem);
        }

        var now = time.GetUtcNow();
        string code = Secrets.NewAuthorizationCode(now);
        await store.InsertCodeAsync(new NewCode(
            Secrets.StoreKey(code), profile.RowId, user.RowId, request.ReturnUrl, scope.Value,
            request.CodeChallenge, request.CodeChallenge is null ? null : request.CodeChallengeMethod ?? "plain",
            now, now + options.AuthorizationCodeLifetime), ct);
        return code;
    }

    public static string? PkceProblem(string? challenge, string? method, bool isPublic)
    {
        if (challenge is null)
        {
            return method is not null
                ? "--code-challenge-method needs --code-challenge"
                : isPublic ? "public clients must use PKCE: pass --code-challenge (S256)" : null;
        }
        if (method is not (null or "S256" or "plain"))
        {
            return "--code-challenge-method must be S256 or plain";
        }
        // RFC 7636 §4.2: the challenge has the verifier's alphabet and length (S256 gives exactly 43).
        return challenge.Length is < 43 or > 128 || !challenge.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '~')
            ? "--code-challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~"
            : null;
    }
}
