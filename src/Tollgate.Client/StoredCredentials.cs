namespace Tollgate.Client;

/// <summary>
/// Everything an <see cref="AccessTokenProvider"/> needs to keep handing out access tokens: where and as whom to
/// refresh, the refresh token returned last, and the cached access token.
/// </summary>
public sealed record StoredCredentials
{
    /// <summary>The token endpoint refreshes are sent to.</summary>
    public required Uri TokenEndpoint { get; init; }

    /// <summary>The client id.</summary>
    public required string ClientId { get; init; }

    /// <summary>The client secret, or <see langword="null"/> for a public client.</summary>
    public string? ClientSecret { get; init; }

    /// <summary>The refresh token returned last.</summary>
    public required string RefreshToken { get; init; }

    /// <summary>The cached access token, if any.</summary>
    public string? AccessToken { get; init; }

    /// <summary>When <see cref="AccessToken"/> expires (UTC).</summary>
    public DateTimeOffset? AccessTokenExpiresAt { get; init; }

    /// <summary>The scope that was granted or asked for, if known.</summary>
    public string? Scope { get; init; }
}
