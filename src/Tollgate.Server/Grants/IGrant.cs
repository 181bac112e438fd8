using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Grants;

/// <summary>One grant type of the token endpoint (RFC 6749 §4), handled by an ordered list of checks.</summary>
internal interface IGrant
{
    /// <summary>The <c>grant_type</c> value this handles.</summary>
    string GrantType { get; }

    /// <summary>Whether this client may use this grant at all (else <c>unauthorized_client</c>).</summary>
    bool IsAllowedFor(Profile client);

    /// <summary>Runs after the client is authenticated; returns tokens or the error that refuses them.</summary>
    ValueTask<GrantResult> HandleAsync(TokenRequest request, Profile client, CancellationToken ct);
}
