using System.Security.Cryptography;
using System.Text;

namespace Tollgate.Client;

/// <summary>Proof Key for Code Exchange (RFC 7636) helpers for the authorization code flow.</summary>
public static class Pkce
{
    /// <summary>Creates a random code verifier: 43 characters of base64url (256 bits of entropy).</summary>
    public static string CreateCodeVerifier() => Base64Url(RandomNumberGenerator.GetBytes(32));

    /// <summary>The <c>S256</c> code challenge of a verifier: base64url(SHA-256(ASCII(verifier))).</summary>
    /// <param name="codeVerifier">The code verifier.</param>
    public static string CreateS256Challenge(string codeVerifier)
    {
        ArgumentException.ThrowIfNullOrEmpty(codeVerifier);
        return Base64Url(SHA256.HashData(Encoding.ASCII.GetBytes(codeVerifier)));
    }

    internal static string Base64Url(ReadOnlySpan<byte> bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
