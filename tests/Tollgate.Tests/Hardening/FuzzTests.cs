using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using FsCheck;
using FsCheck.Fluent;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Hardening;

/// <summary>
/// Property tests through the real HTTP pipeline (Kestrel, middleware, endpoints, SQLite): random and malformed
/// requests to the token, tokeninfo, user-profile and authorization endpoints. For every one: never a 5xx, a
/// refusal is always the protocol's well-formed JSON error with its request id, and the store is unchanged.
/// </summary>
/// <remarks>
/// The generators mix real credentials and tokens (so requests get past the first checks) with mangled ones,
/// malformed encodings, wrong types, duplicates and oversized values. The only real tokens given out are ones
/// whose successful use writes nothing (a <c>reuse</c>-policy refresh token, client credentials, an expired code),
/// so "the store is unchanged" holds for every request, successful or not.
/// CI runs a few hundred cases per property (about a minute in all). For hours offline:
/// <c>TOLLGATE_FUZZ_ITERATIONS=200000 dotnet test --filter FullyQualifiedName~FuzzTests</c>.
/// A failure prints the request and FsCheck's replay seed.
/// </remarks>
public sealed class FuzzTests : IAsyncLifetime
{
    private const string Scope = "videocentral::reporting";

    private static readonly HashSet<string> ProtocolErrors =
    [
        "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
        "invalid_scope", "invalid_token", "insufficient_scope", "slow_down",
    ];

    private TollgateHost _host = null!;
    private Material _m = null!;

    private static int Iterations(int ciDefault) =>
        int.TryParse(Environment.GetEnvironmentVariable("TOLLGATE_FUZZ_ITERATIONS"), out int n) && n > 0 ? n : ciDefault;

    /// <summary>Real values the generators draw from, next to garbage.</summary>
    private sealed record Material(
        string ClientId, string Secret, string PublicClientId, string ScopedClientId, string ScopedSecret,
        string RefreshToken, string AccessToken, string ExpiredCode);

    public async Task InitializeAsync()
    {
        // Per-address failure throttling would soon answer every request with 429; switch it off to reach the deeper checks.
        _host = await TollgateHost.StartAsync(StoreKind.Sqlite, o => o.RateLimits.FailedAuthenticationsPerIpPerMinute = 0);
        var (profile, tokens) = await _host.AuthorizeAsync(refreshPolicy: "reuse");
        var publicProfile = await _host.CreateProfileAsync(isPublic: true);
        var scoped = await _host.CreateProfileAsync(scopes: [Scope]);
        var user = await _host.CreateUserAsync();
        string expired = await _host.IssueCodeAsync(profile, user);
        _host.Clock.Advance(TimeSpan.FromMinutes(10));
        // The access token must stay valid: issue it after the clock moved.
        var fresh = await _host.RefreshAsync(profile, tokens.RefreshToken);
        _m = new Material(profile.ClientId, profile.ClientSecret!, publicProfile.ClientId, scoped.ClientId, scoped.ClientSecret!,
            tokens.RefreshToken, fresh.AccessToken, expired);
    }

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact]
    public void The_token_endpoint_answers_any_request_with_tokens_or_a_protocol_error_and_changes_nothing() =>
        Run(TokenRequests(), Iterations(1200));

    [Fact]
    public void Tokeninfo_and_the_profile_endpoint_answer_any_request_with_a_protocol_error_or_the_truth() =>
        Run(ResourceRequests(), Iterations(500));

    [Fact]
    public void Any_method_and_path_including_the_authorization_endpoint_never_fails_the_server() =>
        Run(AnyRequests(), Iterations(300));

    private void Run(Gen<FuzzRequest> requests, int iterations)
    {
        string before = _host.Snapshot();
        var property = Prop.ForAll(requests.ToArbitrary(), request => Check(request, before));
        global::FsCheck.Check.One(Config.QuickThrowOnFailure.WithMaxTest(iterations).WithQuietOnSuccess(true), property);
        Assert.Equal(before, _host.Snapshot());
    }

    private void Check(FuzzRequest request, string before)
    {
        bool refusedByKestrel = request.BreaksHttpFraming || request.Path.Length > 2 * _host.Options.Limits.MaxRequestTargetBytes;
        (HttpStatusCode, HttpResponseHeaders, string, string) answer;
        try
        {
            answer = SendAsync(request).GetAwaiter().GetResult();
        }
        catch (HttpRequestException e) when (refusedByKestrel && e.InnerException is IOException)
        {
            // Kestrel answers such a request with a bare 4xx and closes the connection at once, without reading its
            // body (which it cannot delimit, RFC 9112 §6.3, or which follows a request line it refused). A client still
            // sending a long body then finds the connection closed (broken pipe, reset) before it can read that answer:
            // the refusal, seen from the client's side. What remains to check is that nothing was stored.
            Assert.True(before == _host.Snapshot(), $"the store changed after {request}");
            return;
        }
        var (status, headers, contentType, body) = answer;
        Assert.True((int)status < 500, $"{(int)status} for {request}: {body}");
        if (refusedByKestrel)
        {
            // Kestrel refuses a request whose length it cannot determine, or whose request line is beyond its hard limit
            // (twice ours, see docs/configuration.md), before any of our code runs, with a bare 4xx. Either may also reach
            // the server as an ordinary request (HttpClient drops what follows a '#', and sends an empty body with a length),
            // so all that is asked here is the property itself: no 5xx, checked above.
        }
        else if (IsOperationsPath(request.Path))
        {
            // Health and metrics answer in their own formats; that they answered below 500 is the check.
        }
        else if (!IsApiPath(request.Path))
        {
            // HEAD answers carry no body to check.
            // The people's pages (/ap/oa, /apps, /console, /device, /) answer in HTML or by redirecting;
            // only JSON answers are checked for shape.
            // Refusals in JSON must be the protocol's; /readyz's and /healthz's successes are their own shape.
            if (contentType.StartsWith("application/json", StringComparison.Ordinal) && request.Method != "HEAD" && (int)status >= 400)
            {
                AssertProtocolError(request, status, headers, body);
            }
        }
        else if (request.Method != "HEAD")
        {
            Assert.Equal("application/json;charset=UTF-8", contentType.Replace(" ", "", StringComparison.Ordinal));
            if (status == HttpStatusCode.OK)
            {
                using var json = JsonDocument.Parse(body);
                Assert.True(json.RootElement.TryGetProperty("access_token", out _) || json.RootElement.TryGetProperty("aud", out _)
                    || json.RootElement.TryGetProperty("user_id", out _), $"200 without a token or claims for {request}: {body}");
            }
            else
            {
                AssertProtocolError(request, status, headers, body);
            }
        }
        Assert.True(before == _host.Snapshot(), $"the store changed after {request}");
    }

    /// <summary>The protocol's machine endpoints, which must always answer JSON; every other path is a page or nothing.</summary>
    private static bool IsApiPath(string path) =>
        path.StartsWith("/auth/o2/", StringComparison.Ordinal) || path.StartsWith("/user/profile", StringComparison.Ordinal);

    private static bool IsOperationsPath(string path) =>
        path.StartsWith("/healthz", StringComparison.Ordinal) || path.StartsWith("/readyz", StringComparison.Ordinal)
        || path.StartsWith("/metrics", StringComparison.Ordinal);

    private static void AssertProtocolError(FuzzRequest request, HttpStatusCode status, HttpResponseHeaders headers, string body)
    {
        Assert.True((int)status is >= 400 and < 500, $"{(int)status} for {request}");
        using var json = JsonDocument.Parse(body);
        var root = json.RootElement;
        string? error = root.GetProperty("error").GetString();
        Assert.True(error is not null && ProtocolErrors.Contains(error), $"unknown error '{error}' for {request}");
        Assert.False(string.IsNullOrWhiteSpace(root.GetProperty("error_description").GetString()));
        Assert.DoesNotContain("   at ", body, StringComparison.Ordinal);
        Assert.Equal(headers.GetValues("x-amzn-RequestId").Single(), root.GetProperty("request_id").GetString());
    }

    private async Task<(HttpStatusCode, HttpResponseHeaders, string, string)> SendAsync(FuzzRequest request)
    {
        using var message = new HttpRequestMessage(new HttpMethod(request.Method), request.Path);
        if (request.Body is not null)
        {
            message.Content = new ByteArrayContent(request.Body);
            if (request.ContentType is not null)
            {
                message.Content.Headers.TryAddWithoutValidation("Content-Type", request.ContentType);
            }
        }
        foreach (var (name, value) in request.Headers)
        {
            if (name == "Transfer-Encoding" && request.Body is null)
            {
                continue; // HttpClient will not send a chunked request without content
            }
            message.Headers.TryAddWithoutValidation(name, value);
        }
        using var response = await _host.Http.SendAsync(message);
        string body = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, response.Headers, response.Content.Headers.ContentType?.ToString() ?? "", body);
    }

    // ---- Generators ----

    /// <summary>Strings that break parsers: separators, percent signs, quotes, control and non-ASCII characters, long runs.</summary>
    private static Gen<string> Junk() => Gen.OneOf(
        Gen.Elements("", " ", "%", "%%", "%zz", "%C3", "%00", "&", "=", "+", "|", "\"", "\\", "\u0000", "\r\n", "é", "𝄞", "null", "[]", "{}"),
        Gen.Elements("abcdefghijklmnopqrstuvwxyz0123456789-._~%&=+|/?#[]@!$'()*,;:\"<> \u00e9\u20ac\u0001\u007f".ToCharArray())
            .ArrayOf().Select(chars => new string(chars)),
        Gen.Choose(100, 5000).Select(n => new string('A', n)));

    private Gen<string> Mangled(string real) => Gen.OneOf(
        Gen.Constant(real),
        Gen.Choose(0, real.Length - 1).Select(i => real[..i] + (real[i] == 'A' ? 'B' : 'A') + real[(i + 1)..]),
        Gen.Choose(0, real.Length - 1).Select(i => real[..i]),
        Gen.Constant(real + real),
        Gen.Constant(real.ToUpperInvariant()),
        Gen.Constant(Uri.EscapeDataString(real)));

    private Gen<(string, string)> Parameter() => Gen.OneOf(
        Gen.OneOf(Gen.Elements("authorization_code", "refresh_token", "client_credentials", "device_code", "password", "urn:x"), Junk())
            .Select(v => ("grant_type", v)),
        Gen.OneOf(Mangled(_m.ClientId), Gen.Elements(_m.PublicClientId, _m.ScopedClientId), Junk()).Select(v => ("client_id", v)),
        Gen.OneOf(Mangled(_m.Secret), Gen.Constant(_m.ScopedSecret), Junk()).Select(v => ("client_secret", v)),
        Gen.OneOf(Mangled(_m.ExpiredCode), Junk()).Select(v => ("code", v)),
        Gen.OneOf(Mangled(_m.RefreshToken), Junk()).Select(v => ("refresh_token", v)),
        Gen.OneOf(Gen.Elements(TollgateHost.ReturnUrl, "https://evil.example/cb"), Junk()).Select(v => ("redirect_uri", v)),
        Gen.OneOf(Gen.Elements(Scope, "profile", "profile postal_code", "profile profile"), Junk()).Select(v => ("scope", v)),
        Gen.OneOf(Gen.Constant(new string('a', 43)), Junk()).Select(v => ("code_verifier", v)),
        Junk().Zip(Junk()));

    /// <summary>Requests built mostly of the right parameters, so most get past parsing and authentication.</summary>
    private Gen<(string, string)[]> Parameters() => Gen.OneOf(
        Parameter().ArrayOf(),
        // A coherent request with one or two parameters replaced: reaches the grants' own checks.
        Gen.Elements(
            new[] { ("grant_type", "refresh_token"), ("refresh_token", _m.RefreshToken), ("client_id", _m.ClientId), ("client_secret", _m.Secret) },
            new[] { ("grant_type", "client_credentials"), ("scope", Scope), ("client_id", _m.ScopedClientId), ("client_secret", _m.ScopedSecret) },
            new[] { ("grant_type", "authorization_code"), ("code", _m.ExpiredCode), ("redirect_uri", TollgateHost.ReturnUrl), ("client_id", _m.ClientId), ("client_secret", _m.Secret) },
            new[] { ("grant_type", "refresh_token"), ("refresh_token", _m.RefreshToken), ("client_id", _m.PublicClientId) })
            .SelectMany(good => Parameter().ArrayOf().Select(extra =>
                good.Where(p => extra.All(e => e.Item1 != p.Item1)).Concat(extra).ToArray())));

    private static byte[] Form((string, string)[] parameters, bool encode) => Encoding.UTF8.GetBytes(string.Join('&',
        parameters.Select(p => encode ? $"{Uri.EscapeDataString(Safe(p.Item1))}={Uri.EscapeDataString(Safe(p.Item2))}" : $"{p.Item1}={p.Item2}")));

    /// <summary>Lone surrogates cannot be percent-encoded; the raw variant still sends them (as replacement characters).</summary>
    private static string Safe(string s) => new(s.Select(c => char.IsSurrogate(c) ? '?' : c).ToArray());

    private static byte[] Json((string, string)[] parameters, int style)
    {
        var text = new StringBuilder("{");
        for (int i = 0; i < parameters.Length; i++)
        {
            string value = style switch
            {
                1 => "123",
                2 => "null",
                3 => "{\"a\":[1,2,{\"b\":null}]}",
                _ => JsonSerializer.Serialize(Safe(parameters[i].Item2)),
            };
            text.Append(i == 0 ? "" : ",").Append(JsonSerializer.Serialize(Safe(parameters[i].Item1))).Append(':').Append(value);
        }
        return Encoding.UTF8.GetBytes(text.Append('}').ToString());
    }

    private static Gen<byte[]> Mutate(byte[] body) => body.Length == 0
        ? Gen.Constant(body)
        : Gen.Choose(0, body.Length - 1).Zip(Gen.Choose(0, 255), (at, value) =>
        {
            var copy = body.ToArray();
            copy[at] = (byte)value;
            return copy;
        });

    private Gen<(string?, byte[])> Body() => Parameters().SelectMany(parameters => Gen.OneOf(
        Gen.Constant<(string?, byte[])>(("application/x-www-form-urlencoded", Form(parameters, encode: true))),
        Gen.Constant<(string?, byte[])>(("application/x-www-form-urlencoded", Form(parameters, encode: false))),
        Gen.Choose(0, 3).Select(style => ((string?)"application/json", Json(parameters, style))),
        Mutate(Form(parameters, encode: true)).Select(b => ((string?)"application/x-www-form-urlencoded", b)),
        Mutate(Json(parameters, 0)).Select(b => ((string?)"application/json", b)),
        Gen.Choose(0, 3).Select(cut => ((string?)"application/json", Json(parameters, 0).SkipLast(cut).ToArray())),
        Gen.Elements<string?>(null, "", "text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded; charset=latin1",
                "application/json; charset=utf-8", "a/b/c", ";;;", "application/x-www-form-urlencoded; charset=\"utf-8\"")
            .Select(type => (type, Form(parameters, encode: true))),
        Gen.Choose(0, 255).Select(b => (byte)b).ArrayOf().Select(bytes => ((string?)"application/x-www-form-urlencoded", bytes))));

    private Gen<(string, string)> Header() => Gen.OneOf(
        Gen.Constant(("Authorization", "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{_m.ClientId}:{_m.Secret}")))),
        Gen.Constant(("Authorization", "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{_m.ClientId}:wrong")))),
        Gen.Elements("Basic", "Basic ", "Basic !!!!", "Basic Og==", "Bearer", "Bearer x", "Digest a=b", "Basic " + new string('A', 3000))
            .Select(v => ("Authorization", v)),
        Mangled(_m.AccessToken).Select(t => ("Authorization", "Bearer " + t)),
        Mangled(_m.AccessToken).Select(t => ("x-amz-access-token", t)),
        Gen.Elements("Transfer-Encoding", "Expect", "Content-Encoding", "X-Forwarded-For", "Connection", "X-Anything")
            .Zip(Gen.Elements("chunked", "100-continue", "gzip", "1.2.3.4", "close", "x", "")));

    private static Gen<(string, string)[]> Headers(Gen<(string, string)> header) =>
        Gen.Frequency((3, Gen.Constant(Array.Empty<(string, string)>())), (2, header.ArrayOf(3)));

    private Gen<FuzzRequest> TokenRequests() =>
        Body().SelectMany(body => Headers(Header()).Select(headers =>
            new FuzzRequest("POST", "/auth/o2/token", headers, body.Item1, body.Item2)));

    private Gen<string> QueryValue() => Gen.OneOf(Mangled(_m.AccessToken), Junk().Select(Uri.EscapeDataString), Junk());

    private Gen<FuzzRequest> ResourceRequests() =>
        Gen.Elements("/auth/o2/tokeninfo", "/user/profile").SelectMany(path =>
            QueryValue().ArrayOf(2).SelectMany(values =>
                Gen.Elements("access_token", "access_token", "token", "").ArrayOf(2).SelectMany(names =>
                    Headers(Header()).Select(headers => new FuzzRequest("GET",
                        path + (values.Length == 0 ? "" : "?" + string.Join('&', values.Zip(names, (v, n) => $"{n}={Safe(v)}"))),
                        headers, null, null)))));

    private Gen<FuzzRequest> AnyRequests() =>
        Gen.Elements("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE").SelectMany(method =>
            Gen.Elements("/auth/o2/token", "/auth/o2/tokeninfo", "/user/profile", "/ap/oa", "/", "/auth/o2/create/codepair",
                    "/healthz", "/readyz", "/metrics", "/../etc/passwd", "/auth/o2/token/", "/AUTH/O2/TOKEN", "/%2e%2e/", "/./")
                .SelectMany(path => Gen.OneOf(
                        Gen.Constant(""),
                        Gen.Constant($"?client_id={_m.ClientId}&scope=profile&response_type=code&redirect_uri={Uri.EscapeDataString(TollgateHost.ReturnUrl)}&state=s"),
                        Junk().Select(j => "?" + Uri.EscapeDataString(j)))
                    .SelectMany(query => Body().SelectMany(body => Headers(Header()).Select(headers =>
                        new FuzzRequest(method, path + query, headers,
                            method is "GET" or "HEAD" or "TRACE" ? null : body.Item1, method is "GET" or "HEAD" or "TRACE" ? null : body.Item2))))));
}

/// <summary>One generated request; its text is what a failing property prints.</summary>
internal sealed record FuzzRequest(string Method, string Path, (string Name, string Value)[] Headers, string? ContentType, byte[]? Body)
{
    /// <summary>A Transfer-Encoding other than chunked leaves the body length undefined (RFC 9112 §6.3): HTTP-level garbage.</summary>
    public bool BreaksHttpFraming => Body is not null && Headers.Any(h => h.Name == "Transfer-Encoding" && h.Value != "chunked");

    public override string ToString()
    {
        string body = Body is null ? "" : Encoding.UTF8.GetString(Body.Take(300).ToArray());
        return $"{Method} {(Path.Length > 200 ? Path[..200] + "..." : Path)} [{string.Join("; ", Headers.Select(h => $"{h.Name}: {(h.Value.Length > 80 ? h.Value[..80] + "..." : h.Value)}"))}] "
            + $"Content-Type: {ContentType ?? "(none)"} Body({Body?.Length ?? 0}): {body}";
    }
}
