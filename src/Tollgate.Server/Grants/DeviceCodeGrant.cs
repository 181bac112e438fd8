using Tollgate.Server.Crypto;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Grants;

/// <summary>
/// <c>grant_type=device_code</c> with <c>device_code</c> and <c>user_code</c>: Login with Amazon's device
/// token request (its own variant of RFC 8628 §3.4, which uses a URN grant type and no user_code). LWA's
/// devices send no client credentials, so the pair itself says which application it belongs to; a
/// client that does authenticate may only redeem its own pairs.
/// </summary>
internal sealed class DeviceCodeGrant(ITokenStore store, AccessTokenIssuer issuer, TimeProvider time) : IGrant
{
    public string GrantType => "device_code";

    public bool IsAllowedFor(Profile client) => true;

    public async ValueTask<GrantResult> HandleAsync(TokenRequest request, Profile client, CancellationToken ct) =>
        (await PollAsync(request, client, ct)).Result;

    /// <summary>The same checks for a device that sends no client credentials; also says which client the pair belonged to.</summary>
    public ValueTask<(GrantResult Result, string? ClientId)> HandleWithoutClientAsync(TokenRequest request, CancellationToken ct) =>
        PollAsync(request, client: null, ct);

    private async ValueTask<(GrantResult Result, string? ClientId)> PollAsync(TokenRequest request, Profile? client, CancellationToken ct)
    {
        // 1. Both codes, as the codepair response gave them.
        if (request.DeviceCode is not { Length: <= 256 } deviceCode)
        {
            return (OAuthError.InvalidRequest("The parameter device_code is missing (or too long): send the device_code from /auth/o2/create/codepair."), null);
        }
        if (Secrets.NormalizeUserCode(request.UserCode) is not { } userCode)
        {
            return (OAuthError.InvalidRequest("The parameter user_code is missing or malformed: send the user_code from /auth/o2/create/codepair."), null);
        }

        // 2. One atomic poll: pending, too fast, denied, expired, or approved and redeemed now.
        var now = time.GetUtcNow();
        string refreshToken = Secrets.NewRefreshToken(now);
        var poll = await store.PollDeviceCodeAsync(Secrets.Hash(deviceCode), userCode, client?.RowId, Secrets.StoreKey(refreshToken), now, ct);
        GrantResult result = poll.Outcome switch
        {
            DevicePollOutcome.Approved => issuer.Issue(poll.ClientId!, poll.UserId!, poll.Scope!, poll.GrantId, refreshToken, echoScope: false),
            DevicePollOutcome.Pending => new OAuthError("authorization_pending",
                "The user has not yet entered the code and approved the request; poll again after the interval.", 400),
            DevicePollOutcome.SlowDown => new OAuthError("slow_down",
                "Polling faster than the interval the codepair response gave; wait longer between requests.", 400),
            DevicePollOutcome.Denied => new OAuthError("access_denied", "The user denied the request.", 400),
            DevicePollOutcome.Expired => new OAuthError("expired_token",
                "The device code has expired; request a new code pair from /auth/o2/create/codepair.", 400),
            _ => OAuthError.InvalidGrant("device_code", "The device code is unknown, was already used, does not match the user_code, or belongs to another client."),
        };
        return (result, poll.ClientId ?? client?.ClientId);
    }
}
