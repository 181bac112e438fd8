using Tollgate.Server.Storage;

namespace Tollgate.Server.Admin;

/// <summary>A person's authorized applications: what the "Your apps" page and <c>tollgate user apps</c> show and remove.</summary>
internal static class UserApps
{
    public static async Task<AdminResult<IReadOnlyList<UserApp>>> ListAsync(ITokenStore store, string email, CancellationToken ct)
    {
        var user = await store.FindUserByEmailAsync(email, ct);
        return user is null
            ? AdminResult<IReadOnlyList<UserApp>>.Refused($"no user has email {email}")
            : AdminResult<IReadOnlyList<UserApp>>.From(await store.ListUserAppsAsync(user.RowId, ct));
    }

    /// <summary>Revokes every grant the application holds for this person, at once (Amazon's way of revoking a refresh token).</summary>
    public static async Task<AdminResult<int>> RemoveAsync(ITokenStore store, long userRowId, string clientId, TimeProvider time, CancellationToken ct)
    {
        if (await store.FindProfileSummaryAsync(clientId, ct) is null)
        {
            return AdminResult<int>.Refused($"no security profile has client id {clientId}");
        }
        return await store.RemoveUserAppAsync(userRowId, clientId, time.GetUtcNow(), ct);
    }
}
