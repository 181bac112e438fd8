using System.Net.Mail;
using Tollgate.Server.Crypto;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Admin;

internal sealed record CreatedUser(string UserId, string Email, string Name);

/// <summary>Creating users (people who sign in and consent).</summary>
internal static class Users
{
    public const int MinPasswordLength = 8;

    public static async Task<AdminResult<CreatedUser>> CreateAsync(
        ITokenStore store, string email, string name, string password, TimeProvider time, CancellationToken ct)
    {
        if (email.Length > 254 || !MailAddress.TryCreate(email, out var address) || address.Address != email)
        {
            return AdminResult<CreatedUser>.Refused($"--email '{Protocol.TokenRequestReader.Printable(email)}' is not an email address");
        }
        if (string.IsNullOrWhiteSpace(name) || name.Length > 200)
        {
            return AdminResult<CreatedUser>.Refused("--name must be 1 to 200 characters");
        }
        if (password.Length < MinPasswordLength || password.Length > 1024)
        {
            return AdminResult<CreatedUser>.Refused($"the password (read from stdin) must be {MinPasswordLength} to 1024 characters");
        }
        string userId = Secrets.NewUserId();
        bool created = await store.CreateUserAsync(new NewUser(userId, email, name.Trim(), Passwords.Hash(password), time.GetUtcNow()), ct);
        return created
            ? new CreatedUser(userId, email, name.Trim())
            : AdminResult<CreatedUser>.Refused($"a user with email {email} already exists");
    }

    /// <summary>Developers may use the developer console; only an administrator (the CLI) makes someone one.</summary>
    public static async Task<AdminResult<string>> SetDeveloperAsync(ITokenStore store, string email, bool isDeveloper, CancellationToken ct) =>
        await store.SetDeveloperAsync(email, isDeveloper, ct) ? email : AdminResult<string>.Refused($"no user has email {email}");
}
