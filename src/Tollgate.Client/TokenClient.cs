using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;

namespace Tollgate.Client;

/// <summary>
/// The token endpoint protocol of Login with Amazon and Tollgate: authorization code (with PKCE), refresh token and
/// client credentials grants, sent as <c>application/x-www-form-urlencoded</c> with the client credentials in the body.
/// </summary>
/// <remarks>
/// Retries (429, 5xx, with backoff, jitter and <c>Retry-After</c>) come from the <see cref="HttpClient"/>: use
/// <see cref="CreateHttpClient"/>, or the client that <c>AddTollgateClient</c> registers. Instances are thread-safe.
/// </remarks>
public sealed class TokenClient
{
    private readonly HttpClient _http;
    private readonly Uri _endpoint;
    private readonly string _clientId;
    private readonly string? _clientSecret;

    /// <summary>Creates a client that sends requests through <paramref name="httpClient"/>.</summary>
    /// <param name="httpClient">The HTTP client; not disposed by this class.</param>
    /// <param name="options">Endpoint and client credentials.</param>
    public TokenClient(HttpClient httpClient, TokenClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(httpClient);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.TokenEndpoint);
        ArgumentException.ThrowIfNullOrEmpty(options.ClientId);
        if (!options.TokenEndpoint.IsAbsoluteUri)
            throw new ArgumentException("The token endpoint must be an absolute URL.", nameof(options));
        _http = httpClient;
        _endpoint = options.TokenEndpoint;
        _clientId = options.ClientId;
        _clientSecret = string.IsNullOrEmpty(options.ClientSecret) ? null : options.ClientSecret;
    }

    /// <summary>
    /// Creates an <see cref="HttpClient"/> whose requests are retried on 429/5xx with exponential backoff and jitter,
    /// honouring <c>Retry-After</c> (Microsoft.Extensions.Http.Resilience). Keep one for the life of the application.
    /// </summary>
    /// <param name="options">Retry settings; defaults when <see langword="null"/>.</param>
    public static HttpClient CreateHttpClient(TokenRetryOptions? options = null) => TokenRetry.CreateHttpClient(options);

    /// <summary>Exchanges an authorization code (<c>grant_type=authorization_code</c>).</summary>
    /// <param name="code">The one-use authorization code.</param>
    /// <param name="redirectUri">The redirect URI the code was obtained with (must match exactly).</param>
    /// <param name="codeVerifier">The PKCE code verifier, when the code was issued with a code challenge.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <exception cref="ReauthorizationRequiredException">The code is invalid, used or expired.</exception>
    /// <exception cref="TokenErrorException">Any other protocol error.</exception>
    public Task<TokenResponse> ExchangeCodeAsync(string code, Uri redirectUri, string? codeVerifier = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(code);
        ArgumentNullException.ThrowIfNull(redirectUri);
        var form = new List<KeyValuePair<string, string>>
        {
            new("grant_type", "authorization_code"),
            new("code", code),
            new("redirect_uri", redirectUri.OriginalString),
        };
        if (!string.IsNullOrEmpty(codeVerifier))
            form.Add(new("code_verifier", codeVerifier));
        return SendAsync(form, cancellationToken);
    }

    /// <summary>Redeems a refresh token (<c>grant_type=refresh_token</c>).</summary>
    /// <param name="refreshToken">The refresh token returned last.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The new tokens; <see cref="TokenResponse.RefreshToken"/> may be a new refresh token, which replaces the old one.</returns>
    /// <exception cref="ReauthorizationRequiredException">The refresh token is no longer valid.</exception>
    /// <exception cref="TokenErrorException">Any other protocol error.</exception>
    public Task<TokenResponse> RefreshAsync(string refreshToken, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(refreshToken);
        return SendAsync(
            [new("grant_type", "refresh_token"), new("refresh_token", refreshToken)],
            cancellationToken);
    }

    /// <summary>Requests an application token (<c>grant_type=client_credentials</c>); no refresh token is returned.</summary>
    /// <param name="scope">The scope, for example <c>videocentral::reporting</c>.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <exception cref="TokenErrorException">A protocol error.</exception>
    public Task<TokenResponse> ClientCredentialsAsync(string scope, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(scope);
        return SendAsync(
            [new("grant_type", "client_credentials"), new("scope", scope)],
            cancellationToken);
    }

    private async Task<TokenResponse> SendAsync(List<KeyValuePair<string, string>> form, CancellationToken cancellationToken)
    {
        form.Add(new("client_id", _clientId));
        if (_clientSecret is not null)
            form.Add(new("client_secret", _clientSecret));

        using var request = new HttpRequestMessage(HttpMethod.Post, _endpoint)
        {
            Content = new FormUrlEncodedContent(form),
        };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
        var body = await response.Content.ReadAsByteArrayAsync(cancellationToken);
        return Parse(response, body);
    }

    internal static TokenResponse Parse(HttpResponseMessage response, byte[] body)
    {
        var status = response.StatusCode;
        var headerRequestId = response.Headers.TryGetValues("x-amzn-RequestId", out var ids) ? ids.FirstOrDefault() : null;
        JsonElement root = default;
        var isObject = false;
        try
        {
            if (body.Length > 0)
            {
                using var doc = JsonDocument.Parse(body);
                root = doc.RootElement.Clone();
                isObject = root.ValueKind == JsonValueKind.Object;
            }
        }
        catch (JsonException)
        {
            isObject = false;
        }

        if (!response.IsSuccessStatusCode)
        {
            var error = isObject ? GetString(root, "error") : null;
            var description = isObject ? GetString(root, "error_description") : null;
            var requestId = (isObject ? GetString(root, "request_id") : null) ?? headerRequestId;
            if (error is null)
            {
                error = "invalid_response";
                description ??= $"HTTP {(int)status} {response.ReasonPhrase} without an OAuth error body";
            }
            if (error == "invalid_grant")
                throw new ReauthorizationRequiredException(status, description, requestId);
            throw new TokenErrorException(status, error, description, requestId);
        }

        var accessToken = isObject ? GetString(root, "access_token") : null;
        if (accessToken is null)
            throw new TokenErrorException(status, "invalid_response", "The token response has no access_token.", headerRequestId);
        var expiresIn = isObject ? GetSeconds(root, "expires_in") : null;
        return new TokenResponse(
            accessToken,
            GetString(root, "refresh_token"),
            GetString(root, "token_type") ?? "bearer",
            // RFC 6749 leaves expires_in optional; without it, assume LWA's documented default of one hour.
            TimeSpan.FromSeconds(expiresIn ?? 3600),
            GetString(root, "scope"));
    }

    private static string? GetString(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } s ? s : null;

    private static long? GetSeconds(JsonElement obj, string name)
    {
        if (!obj.TryGetProperty(name, out var value))
            return null;
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var n))
            return n;
        if (value.ValueKind == JsonValueKind.String && long.TryParse(value.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out var s))
            return s;
        return null;
    }
}
