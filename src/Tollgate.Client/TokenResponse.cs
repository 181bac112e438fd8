namespace Tollgate.Client;

/// <summary>A successful answer of the token endpoint.</summary>
/// <param name="AccessToken">The access token (<c>Atza|...</c> at Amazon and Tollgate).</param>
/// <param name="RefreshToken">The refresh token, when the server returned one. It may differ from the one sent:
/// always keep the one returned last. Absent for client credentials grants.</param>
/// <param name="TokenType">The token type, <c>bearer</c>.</param>
/// <param name="ExpiresIn">Lifetime of the access token as the server stated it (<c>expires_in</c>).</param>
/// <param name="Scope">The granted scope, when the server returned one.</param>
public sealed record TokenResponse(string AccessToken, string? RefreshToken, string TokenType, TimeSpan ExpiresIn, string? Scope);
