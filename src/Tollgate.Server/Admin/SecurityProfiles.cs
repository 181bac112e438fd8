using Tollgate.Server.Crypto;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Admin;

internal sealed record ProfileRequest(
    string Name,
    IReadOnlyList<string> ReturnUrls,
    IReadOnlyList<string> Scopes,
    string? ClientId,
    string? ClientSecret,
    bool IsPublic,
    string? RefreshPolicy,
    string? OwnerEmail = null);

internal sealed record RotatedSecret(string ClientId, string ClientSecret, DateTimeOffset OldSecretsExpireAt);

internal sealed record CreatedProfile(string ClientId, string? ClientSecret, string AppId, RefreshPolicy RefreshPolicy);

/// <summary>Creating, changing and deleting security profiles, shared by the CLI and the developer console.</summary>
internal static class SecurityProfiles
{
    /// <summary>The console's overlap field: Amazon's 7 days by default, at most what RotateSecretAsync accepts.</summary>
    public const double DefaultOverlapDays = 7;

    public const double MaxOverlapDays = 90;

    public static async Task<AdminResult<string>> AddReturnUrlAsync(
        ITokenStore store, ProfileCache? cache, string clientId, string url, CancellationToken ct, string label = "--return-url")
    {
        if (ReturnUrlProblem(url, label) is { } problem)
        {
            return AdminResult<string>.Refused(problem);
        }
        if (!await store.AddReturnUrlAsync(clientId, url, ct))
        {
            return AdminResult<string>.Refused($"no security profile has client id {clientId}");
        }
        cache?.Invalidate();
        return url;
    }

    public static async Task<AdminResult<string>> RemoveReturnUrlAsync(
        ITokenStore store, ProfileCache? cache, string clientId, string url, CancellationToken ct)
    {
        var outcome = await store.RemoveReturnUrlAsync(clientId, url, ct);
        if (outcome == ReturnUrlRemoval.Removed)
        {
            cache?.Invalidate();
        }
        return outcome switch
        {
            ReturnUrlRemoval.Removed => url,
            ReturnUrlRemoval.LastOne => AdminResult<string>.Refused("a profile needs at least one return URL; add the new one before removing the last"),
            _ => AdminResult<string>.Refused($"{url} is not a return URL of security profile {clientId}"),
        };
    }

    public static async Task<bool> DeleteAsync(ITokenStore store, ProfileCache? cache, string clientId, CancellationToken ct)
    {
        bool deleted = await store.DeleteProfileAsync(clientId, ct);
        if (deleted)
        {
            cache?.Invalidate();
        }
        return deleted;
    }

    /// <summary>An imported secret must be as hard to guess as a generated one, because only a fast hash protects it.</summary>
    public const int MinImportedSecretLength = 32;

    public static async Task<AdminResult<CreatedProfile>> CreateAsync(
        ITokenStore store, ProfileRequest request, TimeProvider time, CancellationToken ct, string urlLabel = "--return-url")
    {
        // 1. Names and URLs that make sense.
        if (string.IsNullOrWhiteSpace(request.Name) || request.Name.Length > 200)
        {
            return AdminResult<CreatedProfile>.Refused("--name must be 1 to 200 characters");
        }
        if (request.ReturnUrls.Count == 0)
        {
            return AdminResult<CreatedProfile>.Refused("at least one --return-url is required");
        }
        foreach (var url in request.ReturnUrls)
        {
            if (ReturnUrlProblem(url, urlLabel) is { } problem)
            {
                return AdminResult<CreatedProfile>.Refused(problem);
            }
        }

        // 1b. An owner (a developer who sees the profile in the console), when one is named.
        User? owner = null;
        if (request.OwnerEmail is not null && (owner = await store.FindUserByEmailAsync(request.OwnerEmail, ct)) is null)
        {
            return AdminResult<CreatedProfile>.Refused($"no user has email {request.OwnerEmail} (--owner)");
        }

        // 2. Scopes that are well-formed scope tokens.
        foreach (var scope in request.Scopes)
        {
            if (!Scope.TryParse(scope, out var parsed, out var problem) || parsed.Tokens.Count != 1)
            {
                return AdminResult<CreatedProfile>.Refused($"--scope '{scope}' is not a single scope token ({problem ?? "contains a space"})");
            }
        }

        // 3. Credentials: generated in Amazon's formats, or imported. Public clients have no secret.
        if (request.IsPublic && request.ClientSecret is not null)
        {
            return AdminResult<CreatedProfile>.Refused("a --public profile has no secret; drop --client-secret");
        }
        if (!request.IsPublic && request.ClientId is not null && request.ClientSecret is null)
        {
            return AdminResult<CreatedProfile>.Refused("--client-id needs --client-secret (or --public)");
        }
        if (request.ClientSecret is { Length: < MinImportedSecretLength })
        {
            return AdminResult<CreatedProfile>.Refused(
                $"--client-secret must be at least {MinImportedSecretLength} characters (Amazon's are 64 hex); secrets are stored as SHA-256, which only a long random secret makes safe");
        }
        if (request.ClientId is { } givenId && (givenId.Length is 0 or > 128 || givenId.Any(c => c is < '!' or > '~')))
        {
            return AdminResult<CreatedProfile>.Refused("--client-id must be 1 to 128 printable ASCII characters without spaces");
        }
        var policy = request.RefreshPolicy is null
            ? (request.IsPublic ? RefreshPolicy.Rotate : RefreshPolicy.Reuse)
            : RefreshPolicyNames.Parse(request.RefreshPolicy);
        if (policy is null)
        {
            return AdminResult<CreatedProfile>.Refused("--refresh-policy must be reuse or rotate");
        }

        string clientId = request.ClientId ?? Secrets.NewClientId();
        string? secret = request.IsPublic ? null : request.ClientSecret ?? Secrets.NewClientSecret();
        string appId = Secrets.NewAppId();
        var created = await store.CreateProfileAsync(new NewProfile(
            clientId, appId, request.Name.Trim(), request.IsPublic, policy.Value,
            request.ReturnUrls, request.Scopes, secret is null ? null : Secrets.Hash(secret), time.GetUtcNow()), ct);
        if (!created)
        {
            return AdminResult<CreatedProfile>.Refused($"a security profile with client id {clientId} already exists");
        }
        if (owner is not null)
        {
            await store.SetProfileOwnerAsync(clientId, owner.RowId, ct);
        }
        return new CreatedProfile(clientId, secret, appId, policy.Value);
    }

    /// <summary>Amazon's overlap: after a rotation the old secret keeps working for 7 days.</summary>
    public static readonly TimeSpan DefaultSecretOverlap = TimeSpan.FromDays(7);

    /// <summary>
    /// Issues a new client secret (generated, or imported) and lets the old ones work until the overlap ends, so that
    /// every deployment of the client can switch without downtime. Refresh tokens are unaffected.
    /// </summary>
    public static async Task<AdminResult<RotatedSecret>> RotateSecretAsync(
        ITokenStore store, string clientId, string? importedSecret, TimeSpan overlap, TimeProvider time, CancellationToken ct)
    {
        if (importedSecret is { Length: < MinImportedSecretLength })
        {
            return AdminResult<RotatedSecret>.Refused($"--client-secret must be at least {MinImportedSecretLength} characters");
        }
        if (overlap < TimeSpan.Zero || overlap > TimeSpan.FromDays(90))
        {
            return AdminResult<RotatedSecret>.Refused("the overlap must be between 0 and 90 days");
        }
        string secret = importedSecret ?? Secrets.NewClientSecret();
        var now = time.GetUtcNow();
        var oldExpire = now + overlap;
        return await store.RotateClientSecretAsync(clientId, Secrets.Hash(secret), now, oldExpire, ct)
            ? new RotatedSecret(clientId, secret, oldExpire)
            : AdminResult<RotatedSecret>.Refused($"no confidential security profile has client id {clientId}");
    }

    /// <summary>
    /// Allowed Return URLs are absolute, without fragments (RFC 6749 §3.1.2), and HTTPS except on
    /// loopback, where native apps listen (RFC 8252 §7.3).
    /// </summary>
    public static string? ReturnUrlProblem(string url, string label = "--return-url")
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || url.Length > 2000)
        {
            return $"{label} '{TokenRequestReader.Printable(url)}' is not an absolute URL";
        }
        if (uri.Fragment.Length > 0)
        {
            return $"{label} '{TokenRequestReader.Printable(url)}' must not contain a fragment (RFC 6749 §3.1.2)";
        }
        bool https = uri.Scheme == Uri.UriSchemeHttps;
        bool loopbackHttp = uri.Scheme == Uri.UriSchemeHttp && uri.IsLoopback;
        bool customScheme = uri.Scheme is not ("http" or "https" or "javascript" or "data" or "file" or "vbscript");
        return https || loopbackHttp || customScheme
            ? null
            : $"{label} '{TokenRequestReader.Printable(url)}' must be https (http only for 127.0.0.1, [::1] or localhost)";
    }
}
