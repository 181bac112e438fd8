namespace Tollgate.Server.Protocol;

/// <summary>The token-request parameters Tollgate reads; every other parameter is ignored (RFC 6749 §3.2).</summary>
internal enum TokenParameter
{
    GrantType,
    Code,
    RedirectUri,
    ClientId,
    ClientSecret,
    RefreshToken,
    Scope,
    CodeVerifier,
    DeviceCode,
    UserCode,
}

/// <summary>
/// The parameters of one token request, whatever the body format. A parameter sent with an
/// empty value counts as omitted (RFC 6749 §3.1).
/// </summary>
internal sealed class TokenRequest
{
    private readonly string?[] _values = new string?[10];
    private int _seen;

    public string? GrantType => _values[(int)TokenParameter.GrantType];

    public string? Code => _values[(int)TokenParameter.Code];

    public string? RedirectUri => _values[(int)TokenParameter.RedirectUri];

    public string? ClientId => _values[(int)TokenParameter.ClientId];

    public string? ClientSecret => _values[(int)TokenParameter.ClientSecret];

    public string? RefreshToken => _values[(int)TokenParameter.RefreshToken];

    public string? Scope => _values[(int)TokenParameter.Scope];

    public string? CodeVerifier => _values[(int)TokenParameter.CodeVerifier];

    public string? DeviceCode => _values[(int)TokenParameter.DeviceCode];

    public string? UserCode => _values[(int)TokenParameter.UserCode];

    /// <summary>
    /// Records a parameter. False when it was already present: RFC 6749 §3.2 forbids repeating one,
    /// and picking either copy would let a proxy and this server disagree about what was asked
    /// (HTTP parameter pollution).
    /// </summary>
    public bool TrySet(TokenParameter parameter, string value)
    {
        int bit = 1 << (int)parameter;
        if ((_seen & bit) != 0)
        {
            return false;
        }
        _seen |= bit;
        _values[(int)parameter] = value.Length == 0 ? null : value;
        return true;
    }

    /// <summary>Maps a wire name (UTF-8) to a parameter, or null for a parameter we ignore.</summary>
    public static TokenParameter? Lookup(ReadOnlySpan<byte> name) => name switch
    {
        _ when name.SequenceEqual("grant_type"u8) => TokenParameter.GrantType,
        _ when name.SequenceEqual("code"u8) => TokenParameter.Code,
        _ when name.SequenceEqual("redirect_uri"u8) => TokenParameter.RedirectUri,
        _ when name.SequenceEqual("client_id"u8) => TokenParameter.ClientId,
        _ when name.SequenceEqual("client_secret"u8) => TokenParameter.ClientSecret,
        _ when name.SequenceEqual("refresh_token"u8) => TokenParameter.RefreshToken,
        _ when name.SequenceEqual("scope"u8) => TokenParameter.Scope,
        _ when name.SequenceEqual("code_verifier"u8) => TokenParameter.CodeVerifier,
        _ when name.SequenceEqual("device_code"u8) => TokenParameter.DeviceCode,
        _ when name.SequenceEqual("user_code"u8) => TokenParameter.UserCode,
        _ => null,
    };

    public static string WireName(TokenParameter parameter) => parameter switch
    {
        TokenParameter.GrantType => "grant_type",
        TokenParameter.Code => "code",
        TokenParameter.RedirectUri => "redirect_uri",
        TokenParameter.ClientId => "client_id",
        TokenParameter.ClientSecret => "client_secret",
        TokenParameter.RefreshToken => "refresh_token",
        TokenParameter.Scope => "scope",
        TokenParameter.DeviceCode => "device_code",
        TokenParameter.UserCode => "user_code",
        _ => "code_verifier",
    };
}
