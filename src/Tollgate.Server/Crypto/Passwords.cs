using Microsoft.AspNetCore.Identity;

namespace Tollgate.Server.Crypto;

/// <summary>
/// User passwords are low-entropy, so unlike client secrets they get a deliberately slow, salted KDF:
/// ASP.NET Core Identity's hasher (PBKDF2-HMAC-SHA512, 100,000 iterations, versioned format so the
/// cost can rise later without invalidating stored hashes).
/// </summary>
internal static class Passwords
{
    private static readonly PasswordHasher<object> Hasher = new();
    private static readonly object User = new();

    public static string Hash(string password) => Hasher.HashPassword(User, password);

    public static bool Verify(string hash, string password) =>
        Hasher.VerifyHashedPassword(User, hash, password) != PasswordVerificationResult.Failed;
}
