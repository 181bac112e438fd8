using System.Text;
using Microsoft.AspNetCore.Http;
using Tollgate.Server.Crypto;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Endpoints;

/// <summary>
/// Client authentication at the token endpoint (RFC 6749 §2.3): <c>client_id</c> and
/// <c>client_secret</c> in the body as Amazon documents, or HTTP Basic; public clients send
/// <c>client_id</c> alone. The checks, in order:
/// </summary>
internal sealed class ClientAuthentication(ProfileCache profiles, TimeProvider time)
{
    private const int MaxClientIdLength = 256;
    private const int MaxSecretLength = 512;

    public async ValueTask<(Profile? Client, OAuthError? Error)> AuthenticateAsync(
        HttpContext http, TokenRequest request, CancellationToken ct)
    {
        // 1. Where the credentials are: Basic header, body, or (an error) both.
        var (basicId, basicSecret, headerError) = ReadBasicHeader(http.Request.Headers.Authorization);
        if (headerError is not null)
        {
            return (null, headerError);
        }
        bool usedBasic = basicId is not null;
        if (usedBasic && request.ClientSecret is not null)
        {
            return (null, OAuthError.InvalidRequest(
                "Client credentials were sent both in the Authorization header and in the body; use one method (RFC 6749 §2.3)."));
        }
        if (usedBasic && request.ClientId is not null && request.ClientId != basicId)
        {
            return (null, OAuthError.InvalidRequest("The client_id in the body differs from the one in the Authorization header."));
        }
        string? clientId = basicId ?? request.ClientId;
        string? secret = usedBasic ? basicSecret : request.ClientSecret;

        // 2. Who claims to be calling.
        if (clientId is null)
        {
            return (null, OAuthError.InvalidClient(
                "Client authentication failed: client_id is missing. Send client_id and client_secret in the body, or an HTTP Basic Authorization header."));
        }
        if (clientId.Length > MaxClientIdLength || (secret?.Length ?? 0) > MaxSecretLength)
        {
            return (null, OAuthError.InvalidClient("Client authentication failed: client_id or client_secret is too long.", usedBasic));
        }
        var profile = await profiles.FindAsync(clientId, ct);
        if (profile is null)
        {
            return (null, OAuthError.InvalidClient("Client authentication failed: no security profile has this client_id.", usedBasic));
        }

        // 3. Whether they prove it. Public clients have nothing to prove (PKCE protects their codes).
        if (profile.IsPublic)
        {
            return secret is null
                ? (profile, null)
                : (null, OAuthError.InvalidClient(
                    "Client authentication failed: this security profile is a public client and has no secret; send client_id alone.", usedBasic));
        }
        if (secret is null)
        {
            return (null, OAuthError.InvalidClient("Client authentication failed: client_secret is missing.", usedBasic));
        }
        return SecretMatches(profile, secret)
            ? (profile, null)
            : (null, OAuthError.InvalidClient("Client authentication failed: the client_secret is wrong or has expired.", usedBasic));
    }

    /// <summary>Any current secret, or a rotated-out one still inside its overlap period, is accepted.</summary>
    private bool SecretMatches(Profile profile, string secret)
    {
        var now = time.GetUtcNow();
        bool matched = false;
        // Check every secret, not just until the first match, so timing does not tell which one matched.
        foreach (var stored in profile.Secrets)
        {
            bool live = stored.ExpiresAt is null || stored.ExpiresAt > now;
            matched |= Secrets.Matches(secret, stored.Hash) & live;
        }
        return matched;
    }

    /// <summary>
    /// RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64. Anything but a well-formed
    /// Basic header is refused rather than ignored, so a client never silently authenticates differently
    /// from what it thinks.
    /// </summary>
    private static (string? Id, string? Secret, OAuthError? Error) ReadBasicHeader(string? header)
    {
        if (string.IsNullOrEmpty(header))
        {
            return (null, null, null);
        }
        if (!header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            return (null, null, OAuthError.InvalidClient(
                "Client authentication failed: the token endpoint accepts only HTTP Basic in the Authorization header.", challengeBasic: true));
        }
        var encoded = header.AsSpan(6).Trim();
        Span<byte> decoded = stackalloc byte[1024];
        if (encoded.Length > 1360
            || System.Convert.TryFromBase64Chars(encoded, decoded, out int length) is false
            || !System.Text.Unicode.Utf8.IsValid(decoded[..length]))
        {
            return (null, null, OAuthError.InvalidClient(
                "Client authentication failed: the Basic credentials are not valid base64 of client_id:client_secret.", challengeBasic: true));
        }
        string pair = Encoding.UTF8.GetString(decoded[..length]);
        int colon = pair.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0)
        {
            return (null, null, OAuthError.InvalidClient(
                "Client authentication failed: the Basic credentials must be client_id:client_secret.", challengeBasic: true));
        }
        try
        {
            string id = Uri.UnescapeDataString(pair[..colon].Replace('+', ' '));
            string secret = Uri.UnescapeDataString(pair[(colon + 1)..].Replace('+', ' '));
            return (id, secret.Length == 0 ? null : secret, null);
        }
        catch (UriFormatException)
        {
            return (null, null, OAuthError.InvalidClient(
                "Client authentication failed: the Basic credentials are not form-urlencoded.", challengeBasic: true));
        }
    }
}
