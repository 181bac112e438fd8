using System.Runtime.CompilerServices;
using Tollgate.Server.Crypto;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Grants;

/// <summary>
/// <c>grant_type=refresh_token</c> (RFC 6749 §6), under the security profile's policy: <c>reuse</c>
/// (Amazon's: the same token stays valid) or <c>rotate</c> (each use returns a successor, with reuse
/// detection and a grace window, RFC 9700 §4.14).
/// </summary>
internal sealed class RefreshTokenGrant(
    ITokenStore store, AccessTokenIssuer issuer, ProfileCache cache, TimeProvider time, TollgateOptions options) : IGrant
{
    public string GrantType => "refresh_token";

    public bool IsAllowedFor(Profile client) => true;

    // Pooled, as TokenEndpoint.ProcessAsync: one state machine box fewer to allocate per request of this grant.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<GrantResult> HandleAsync(TokenRequest request, Profile client, CancellationToken ct)
    {
        // 1. The request carries something shaped like one of our refresh tokens.
        if (request.RefreshToken is not { } presented)
        {
            return OAuthError.InvalidRequest("The parameter refresh_token is missing.");
        }
        if (!presented.StartsWith(Secrets.RefreshTokenPrefix, StringComparison.Ordinal) || presented.Length > 2048)
        {
            return OAuthError.InvalidGrant("refresh_token", "It is not a refresh token issued by this server (they start with Atzr|; was '|' sent as %7C?).");
        }

        // 2. It exists and was issued to this client.
        var presentedHash = Secrets.StoreKey(presented);
        if (client.RefreshPolicy == RefreshPolicy.Rotate && request.Scope is null)
        {
            // The common rotate request: the store reads the token, checks that it is this client's and that its
            // grant is alive, and rotates it, all in its one write (steps 2, 3 and 5b at once). A read of our own first
            // would be a second trip to the store, on SQLite through a reader whose page cache every commit empties.
            return await RotateAsync(presentedHash, client, narrowedScope: null, ct);
        }
        // Under reuse the same token comes back again and again: its record is cached (see ProfileCache).
        var token = client.RefreshPolicy == RefreshPolicy.Reuse
            ? await cache.FindReusableRefreshTokenAsync(presentedHash, ct)
            : await store.FindRefreshTokenAsync(presentedHash, ct);
        if (token is null || token.ProfileRowId != client.RowId)
        {
            return UnknownToken();
        }

        // 3. Its grant is alive (not removed by the user, replayed, or revoked).
        if (token.GrantRevoked)
        {
            return GrantRevoked();
        }

        // 4. A requested scope may narrow, never widen, what was granted (RFC 6749 §6).
        string scope = token.Scope;
        if (request.Scope is not null)
        {
            if (!Scope.TryParse(request.Scope, out var requested, out var problem))
            {
                return OAuthError.InvalidScope($"The scope parameter is malformed: {problem}.");
            }
            Scope.TryParse(token.Scope, out var granted, out _);
            var extra = requested.Outside(granted.Tokens.Contains).ToList();
            if (extra.Count > 0)
            {
                return OAuthError.InvalidScope($"The refresh token was not granted: {string.Join(' ', extra)}. A refresh may only narrow the scope.");
            }
            scope = requested.Value;
        }

        // 5a. reuse: nothing to write; the same refresh token goes back, as Amazon does.
        if (client.RefreshPolicy == RefreshPolicy.Reuse && token.ConsumedAt is null)
        {
            return issuer.Issue(client.ClientId, token.UserId, scope, token.GrantId, presented, echoScope: false);
        }

        // 5b. rotate (or a token consumed while its client rotated): consume it and store the successor atomically,
        //     before anyone sees the successor. The store checks it again inside its write.
        return await RotateAsync(presentedHash, client, scope, ct);
    }

    // Pooled, as TokenEndpoint.ProcessAsync: one state machine box fewer to allocate per request of this grant.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<GrantResult> RotateAsync(byte[] presentedHash, Profile client, string? narrowedScope, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        string successor = Secrets.NewRefreshToken(now);
        var (outcome, token) = await store.RotateRefreshTokenAsync(
            presentedHash, Secrets.StoreKey(successor), client.RowId, now, options.RotationGrace, ct);
        if (outcome == RotationOutcome.ReuseDetected)
        {
            cache.Invalidate(); // the grant is revoked (durably, by now): its access tokens must stop working here at once
        }
        return outcome switch
        {
            RotationOutcome.Rotated or RotationOutcome.ReplayedWithinGrace =>
                issuer.Issue(client.ClientId, token!.UserId, narrowedScope ?? token.Scope, token.GrantId, successor, echoScope: false),
            RotationOutcome.ReuseDetected => OAuthError.InvalidGrant(
                "refresh_token",
                $"This refresh token was already used and replaced more than {options.RotationGraceSeconds} s ago. Replaying it suggests it was "
                + "stolen, so its whole token family has been revoked (RFC 9700 §4.14); the user must authorize again. "
                + "Always keep the refresh token returned last.") with
            {
                Audit = new AuditNote(Audit.AuditEvents.FamilyRevoked, token!.UserId,
                    $"rotated refresh token replayed after the grace window; grant {token.GrantId} revoked"),
            },
            RotationOutcome.GrantRevoked => GrantRevoked(),
            _ => UnknownToken(),
        };
    }

    private static OAuthError UnknownToken() =>
        OAuthError.InvalidGrant("refresh_token", "The refresh token is unknown, or was issued to another client.");

    private static OAuthError GrantRevoked() => OAuthError.InvalidGrant(
        "refresh_token", "The grant behind this refresh token has been revoked; the user must authorize again.");
}
