using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Primitives;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Web;

/// <summary>A valid request to <c>/ap/oa</c>: the profile, a registered return URL, known scopes, PKCE.</summary>
internal sealed record AuthorizationRequest(
    Profile Profile, string RedirectUri, Scope Scope, string? State, string? CodeChallenge, string? CodeChallengeMethod)
{
    /// <summary>The request's parameters, to carry it through a sign-in or a consent form unchanged.</summary>
    public IEnumerable<KeyValuePair<string, string?>> Parameters()
    {
        yield return new("client_id", Profile.ClientId);
        yield return new("scope", Scope.Value);
        yield return new("response_type", "code");
        yield return new("redirect_uri", RedirectUri);
        if (State is not null)
        {
            yield return new("state", State);
        }
        if (CodeChallenge is not null)
        {
            yield return new("code_challenge", CodeChallenge);
        }
        if (CodeChallengeMethod is not null)
        {
            yield return new("code_challenge_method", CodeChallengeMethod);
        }
    }

    public string PathAndQuery => QueryHelpers.AddQueryString("/ap/oa", Parameters());

    /// <summary>The return URL with the answer added (RFC 6749 §4.1.2), keeping any query it already has.</summary>
    public string RedirectWith(params (string Name, string? Value)[] answer) =>
        RedirectWith(RedirectUri, State, answer);

    public static string RedirectWith(string redirectUri, string? state, params (string Name, string? Value)[] answer) =>
        QueryHelpers.AddQueryString(redirectUri, answer.Where(a => a.Value is not null)
            .Append((Name: "state", Value: state)).Where(a => a.Value is not null)
            .Select(a => new KeyValuePair<string, string?>(a.Name, a.Value)));
}

/// <summary>Why a request to <c>/ap/oa</c> cannot go on: a page (never redirected) or an error sent back to the application.</summary>
internal sealed record AuthorizationRefusal(string? PageTitle, string? PageText, string? RedirectTo);

/// <summary>
/// The checks on an authorization request, in order. Until the return URL is known to be registered
/// nothing is ever redirected (an attacker could otherwise bounce people, with codes or errors, to a
/// URL of their choosing): those failures are a 400 page. After it, errors go back to the application.
/// </summary>
internal static class AuthorizationRequestReader
{
    private const int MaxStateLength = 2048;

    public static async Task<(AuthorizationRequest? Request, AuthorizationRefusal? Refusal)> ReadAsync(
        Func<string, StringValues> parameter, ProfileCache profiles, CancellationToken ct)
    {
        // 1. One client_id, of a registered application.
        var clientIds = parameter("client_id");
        if (clientIds.Count != 1 || string.IsNullOrEmpty(clientIds[0]) || clientIds[0]!.Length > 256)
        {
            return Page("This sign-in link is not valid",
                "The link does not say which application is asking (its client_id is missing, repeated or malformed). Nothing was shared. Go back to the application and try again.");
        }
        var profile = await profiles.FindAsync(clientIds[0]!, ct);
        if (profile is null)
        {
            return Page("This sign-in link is not valid",
                "No application is registered with this link's client_id. Nothing was shared. Go back to the application and try again.");
        }

        // 2. One redirect_uri, exactly one of the profile's Allowed Return URLs (RFC 9700 §4.1.3). Never redirected to otherwise.
        var redirectUris = parameter("redirect_uri");
        if (redirectUris.Count != 1 || string.IsNullOrEmpty(redirectUris[0]))
        {
            return Page("This sign-in link is not valid",
                $"The link from {profile.Name} does not say where to return (its redirect_uri is missing or repeated). Nothing was shared.");
        }
        string redirectUri = redirectUris[0]!;
        if (!profile.ReturnUrls.Contains(redirectUri, StringComparer.Ordinal))
        {
            return Page("This sign-in link is not valid",
                $"The link asks to return to {Shorten(redirectUri)}, which is not a registered return URL of {profile.Name}. "
                + "You were not sent there, and nothing was shared. If you build this application, add the exact URL to its security profile's Allowed Return URLs.");
        }

        // From here on, the application hears about problems at its own return URL.
        string? state = Single(parameter, "state", out bool stateRepeated);
        if (stateRepeated || state?.Length > MaxStateLength)
        {
            return Back(redirectUri, null, "invalid_request", $"The state parameter must appear once and be at most {MaxStateLength} characters.");
        }
        foreach (var name in new[] { "response_type", "scope", "code_challenge", "code_challenge_method" })
        {
            if (parameter(name).Count > 1)
            {
                return Back(redirectUri, state, "invalid_request", $"The parameter {name} appears more than once.");
            }
        }

        // 3. response_type=code, the only flow this endpoint serves.
        string? responseType = parameter("response_type");
        if (string.IsNullOrEmpty(responseType))
        {
            return Back(redirectUri, state, "invalid_request", "The parameter response_type is missing; use response_type=code.");
        }
        if (responseType != "code")
        {
            return Back(redirectUri, state, "unsupported_response_type", "Only response_type=code is supported.");
        }

        // 4. Known scopes: LWA's user scopes and the profile's registered ones.
        string? rawScope = parameter("scope");
        if (string.IsNullOrEmpty(rawScope))
        {
            return Back(redirectUri, state, "invalid_request", "The parameter scope is missing, e.g. scope=profile.");
        }
        if (!Scope.TryParse(rawScope, out var scope, out var scopeProblem))
        {
            return Back(redirectUri, state, "invalid_scope", $"An unknown scope was requested: {scopeProblem}.");
        }
        var unknown = scope.Outside(s => Scope.StandardUserScopes.Contains(s) || profile.RegisteredScopes.Contains(s)).ToList();
        if (unknown.Count > 0)
        {
            return Back(redirectUri, state, "invalid_scope", $"An unknown scope was requested: {string.Join(' ', unknown)}.");
        }

        // 5. PKCE (RFC 7636): well-formed when present, and mandatory for public clients (RFC 9700 §2.1.1).
        string? challenge = NullIfEmpty(parameter("code_challenge"));
        string? method = NullIfEmpty(parameter("code_challenge_method"));
        if (PkceProblem(challenge, method, profile.IsPublic) is { } pkceProblem)
        {
            return Back(redirectUri, state, "invalid_request", pkceProblem);
        }

        return (new AuthorizationRequest(profile, redirectUri, scope, state, challenge, challenge is null ? null : method ?? "plain"), null);
    }

    private static string? PkceProblem(string? challenge, string? method, bool isPublic)
    {
        if (challenge is null)
        {
            return method is not null ? "code_challenge_method was sent without a code_challenge."
                : isPublic ? "This application is a public client, so it must use PKCE: send code_challenge and code_challenge_method=S256."
                : null;
        }
        if (method is not (null or "S256" or "plain"))
        {
            return "code_challenge_method must be S256 or plain.";
        }
        return challenge.Length is < 43 or > 128 || !challenge.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '~')
            ? "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.2)."
            : null;
    }

    private static string? Single(Func<string, StringValues> parameter, string name, out bool repeated)
    {
        var values = parameter(name);
        repeated = values.Count > 1;
        return values.Count == 1 ? NullIfEmpty(values[0]) : null;
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    private static string Shorten(string url) => url.Length <= 200 ? url : url[..200] + "…";

    private static (AuthorizationRequest?, AuthorizationRefusal?) Page(string title, string text) =>
        (null, new AuthorizationRefusal(title, text, null));

    private static (AuthorizationRequest?, AuthorizationRefusal?) Back(string redirectUri, string? state, string error, string description) =>
        (null, new AuthorizationRefusal(null, null,
            AuthorizationRequest.RedirectWith(redirectUri, state, ("error", error), ("error_description", description))));
}
