using System.CommandLine;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Tollgate.Client;

namespace Tollgate.Cli;

/// <summary>
/// The client commands of the <c>tollgate</c> binary: <c>login</c>, <c>token</c>, <c>logout</c>.
/// Exit codes: 0 success, 2 bad usage, 1 any other failure, always with a one-line reason on stderr.
/// The store is <c>--store PATH</c>, else <c>$TOLLGATE_STORE</c>, else <c>~/.config/tollgate/credentials</c>
/// (<c>$XDG_CONFIG_HOME</c> respected); its key file is <c>PATH.key</c>.
/// </summary>
internal static class ClientCommands
{
    private const int Success = 0;
    private const int Failure = 1;
    private const int Usage = 2;
    private static readonly TimeSpan LoginTimeout = TimeSpan.FromMinutes(5);

    public static IEnumerable<Command> Create() => [Login(), Token(), Logout()];

    private static Option<string?> StoreOption() => new("--store")
    {
        Description = "Credentials file (env TOLLGATE_STORE; default ~/.config/tollgate/credentials)",
    };

    private static Command Login()
    {
        var clientId = new Option<string>("--client-id") { Description = "The security profile's client id", Required = true };
        var secretStdin = new Option<bool>("--client-secret-stdin") { Description = "Read the client secret from the first line of stdin (omit for a public client)" };
        var scope = new Option<string?>("--scope") { Description = "Scopes to ask for, space-separated (browser flow)" };
        var authorizeUrl = new Option<string?>("--authorize-url") { Description = "Authorization endpoint (default: the region's, or /ap/oa on the token URL's host)" };
        var tokenUrl = new Option<string?>("--token-url") { Description = "Token endpoint URL, e.g. http://127.0.0.1:5000/auth/o2/token" };
        var region = new Option<string?>("--region") { Description = "Amazon region preset for the token endpoint: na (default), eu or fe" };
        region.AcceptOnlyFromAmong("na", "eu", "fe");
        var code = new Option<string?>("--code") { Description = "Exchange this authorization code instead of opening a browser" };
        var redirectUri = new Option<string?>("--redirect-uri") { Description = "Redirect URI the code was issued for (with --code), or the loopback URI to listen on (http://127.0.0.1:PORT/callback)" };
        var codeVerifier = new Option<string?>("--code-verifier") { Description = "PKCE code verifier for --code" };
        var store = StoreOption();
        var command = new Command("login", "Authorize this machine and store its refresh token (authorization code flow with PKCE, or --code)")
        {
            clientId, secretStdin, scope, authorizeUrl, tokenUrl, region, code, redirectUri, codeVerifier, store,
        };
        command.SetAction((parsed, ct) => GuardAsync(async () =>
        {
            var tokenUrlValue = parsed.GetValue(tokenUrl);
            var regionValue = parsed.GetValue(region);
            if (tokenUrlValue is not null && regionValue is not null)
                return await FailAsync(Usage, "--token-url and --region cannot be used together");
            Uri endpoint;
            if (tokenUrlValue is not null)
            {
                if (!TryHttpUri(tokenUrlValue, out endpoint))
                    return await FailAsync(Usage, $"--token-url must be an absolute http(s) URL, not '{tokenUrlValue}'");
            }
            else
            {
                endpoint = TokenEndpoints.ForRegion(regionValue ?? "na");
            }

            var codeValue = parsed.GetValue(code);
            var redirectValue = parsed.GetValue(redirectUri);
            Uri? redirect = null;
            if (redirectValue is not null && !TryHttpUri(redirectValue, out redirect))
                return await FailAsync(Usage, $"--redirect-uri must be an absolute http(s) URL, not '{redirectValue}'");
            if (codeValue is not null)
            {
                if (redirect is null)
                    return await FailAsync(Usage, "--code needs --redirect-uri (the one the code was issued for)");
            }
            else
            {
                if (string.IsNullOrWhiteSpace(parsed.GetValue(scope)))
                    return await FailAsync(Usage, "login needs --scope (browser flow) or --code with --redirect-uri");
                if (parsed.GetValue(codeVerifier) is not null)
                    return await FailAsync(Usage, "--code-verifier is only used with --code");
                if (redirect is not null && (!redirect.IsLoopback || redirect.Scheme != Uri.UriSchemeHttp || redirect.Port <= 0))
                    return await FailAsync(Usage, "--redirect-uri for the browser flow must be http://127.0.0.1:PORT/PATH");
            }
            Uri? authorize = null;
            if (parsed.GetValue(authorizeUrl) is { } authorizeValue && !TryHttpUri(authorizeValue, out authorize))
                return await FailAsync(Usage, $"--authorize-url must be an absolute http(s) URL, not '{authorizeValue}'");

            string? secret = null;
            if (parsed.GetValue(secretStdin))
            {
                secret = (await Console.In.ReadLineAsync(ct))?.Trim();
                if (string.IsNullOrEmpty(secret))
                    return await FailAsync(Usage, "--client-secret-stdin was given but stdin had no secret");
            }

            var fileStore = new FileTokenStore(parsed.GetValue(store) ?? FileTokenStore.DefaultPath);
            using var http = TokenClient.CreateHttpClient();
            var client = new TokenClient(http, new TokenClientOptions { TokenEndpoint = endpoint, ClientId = parsed.GetValue(clientId)!, ClientSecret = secret });

            TokenResponse tokens;
            string? scopeValue = parsed.GetValue(scope);
            if (codeValue is not null)
            {
                tokens = await client.ExchangeCodeAsync(codeValue, redirect!, parsed.GetValue(codeVerifier), ct);
            }
            else
            {
                var result = await BrowserLoginAsync(client, parsed.GetValue(clientId)!, scopeValue!, authorize ?? DefaultAuthorizeUrl(endpoint), redirect, ct);
                if (result.Error is not null)
                    return await FailAsync(Failure, result.Error);
                tokens = result.Tokens!;
            }
            if (tokens.RefreshToken is null)
                return await FailAsync(Failure, "the server returned no refresh token, so there is nothing to store");

            var credentials = new StoredCredentials
            {
                TokenEndpoint = endpoint,
                ClientId = parsed.GetValue(clientId)!,
                ClientSecret = secret,
                RefreshToken = tokens.RefreshToken,
                AccessToken = tokens.AccessToken,
                AccessTokenExpiresAt = DateTimeOffset.UtcNow + tokens.ExpiresIn - TimeSpan.FromSeconds(5),
                Scope = tokens.Scope ?? scopeValue,
            };
            await using (await fileStore.AcquireLockAsync(TimeSpan.FromSeconds(60), CancellationToken.None))
                await fileStore.WriteAsync(credentials, CancellationToken.None);
            await Console.Error.WriteLineAsync($"tollgate: logged in; credentials stored in {fileStore.Path}");
            return Success;
        }));
        return command;
    }

    private static Command Token()
    {
        var store = StoreOption();
        var command = new Command("token", "Print a valid access token on stdout (and nothing else), refreshing it only when needed") { store };
        command.SetAction((parsed, ct) => GuardAsync(async () =>
        {
            var fileStore = new FileTokenStore(parsed.GetValue(store) ?? FileTokenStore.DefaultPath);
            using var http = TokenClient.CreateHttpClient();
            var token = await new AccessTokenProvider(fileStore, http).GetAccessTokenAsync(ct);
            await Console.Out.WriteLineAsync(token);
            await Console.Out.FlushAsync(ct);
            return Success;
        }));
        return command;
    }

    private static Command Logout()
    {
        var store = StoreOption();
        var command = new Command("logout", "Forget the stored credentials (Tollgate has no revocation endpoint yet, so nothing is revoked)") { store };
        command.SetAction((parsed, ct) => GuardAsync(async () =>
        {
            var fileStore = new FileTokenStore(parsed.GetValue(store) ?? FileTokenStore.DefaultPath);
            var removed = false;
            if (File.Exists(fileStore.Path))
            {
                // Under the lock, so a refresh in flight in another process cannot write the credentials back.
                await using (await fileStore.AcquireLockAsync(TimeSpan.FromSeconds(60), ct))
                    removed = await fileStore.DeleteAsync(ct);
            }
            await Console.Error.WriteLineAsync(removed
                ? $"tollgate: forgot the credentials in {fileStore.Path} (not revoked: the server has no revocation endpoint)"
                : $"tollgate: no credentials stored in {fileStore.Path}");
            return Success;
        }));
        return command;
    }

    /// <summary>Turns every failure into exit 1 with a one-line reason (the root disables the default handler).</summary>
    private static async Task<int> GuardAsync(Func<Task<int>> action)
    {
        try
        {
            return await action();
        }
        catch (ReauthorizationRequiredException e)
        {
            return await FailAsync(Failure, $"re-authorization needed: {e.Message}; run tollgate login again");
        }
        catch (TokenErrorException e)
        {
            return await FailAsync(Failure, e.Message);
        }
        catch (TokenStoreException e)
        {
            return await FailAsync(Failure, e.Message);
        }
        catch (TimeoutException e)
        {
            return await FailAsync(Failure, e.Message);
        }
        catch (HttpRequestException e)
        {
            return await FailAsync(Failure, $"cannot reach the token endpoint: {e.Message}");
        }
        catch (OperationCanceledException)
        {
            return await FailAsync(Failure, "cancelled");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return await FailAsync(Failure, e.Message);
        }
    }

    private static async Task<int> FailAsync(int code, string reason)
    {
        await Console.Error.WriteLineAsync($"tollgate: {reason.ReplaceLineEndings(" ")}");
        return code;
    }

    private static bool TryHttpUri(string value, out Uri uri) =>
        Uri.TryCreate(value, UriKind.Absolute, out uri!) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps);

    /// <summary>
    /// The authorization endpoint that goes with a token endpoint: Amazon's per-region sign-in pages for the presets,
    /// otherwise <c>/ap/oa</c> on the token endpoint's host (where Tollgate serves it).
    /// </summary>
    internal static Uri DefaultAuthorizeUrl(Uri tokenEndpoint)
    {
        if (tokenEndpoint == TokenEndpoints.NorthAmerica)
            return new Uri("https://www.amazon.com/ap/oa");
        if (tokenEndpoint == TokenEndpoints.Europe)
            return new Uri("https://eu.account.amazon.com/ap/oa");
        if (tokenEndpoint == TokenEndpoints.FarEast)
            return new Uri("https://apac.account.amazon.com/ap/oa");
        return new Uri(tokenEndpoint, "/ap/oa");
    }

    private sealed record LoginResult(TokenResponse? Tokens, string? Error);

    /// <summary>
    /// The authorization code flow with PKCE (S256) through a loopback redirect: listens on 127.0.0.1, prints the URL
    /// to open (stdout) and opens a browser where one exists, checks <c>state</c>, and exchanges the code.
    /// </summary>
    private static async Task<LoginResult> BrowserLoginAsync(TokenClient client, string clientId, string scope, Uri authorize, Uri? redirect, CancellationToken ct)
    {
        using var listener = new TcpListener(IPAddress.Loopback, redirect?.Port ?? 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var path = redirect?.AbsolutePath ?? "/callback";
        var redirectUri = new Uri($"http://127.0.0.1:{port}{path}");
        var verifier = Pkce.CreateCodeVerifier();
        var state = Pkce.Base64Url(RandomNumberGenerator.GetBytes(16));
        var query = string.Join('&', new[]
        {
            ("client_id", clientId), ("scope", scope), ("response_type", "code"), ("redirect_uri", redirectUri.AbsoluteUri),
            ("state", state), ("code_challenge", Pkce.CreateS256Challenge(verifier)), ("code_challenge_method", "S256"),
        }.Select(p => $"{p.Item1}={Uri.EscapeDataString(p.Item2)}"));
        var url = new UriBuilder(authorize) { Query = query }.Uri.AbsoluteUri;

        await Console.Error.WriteLineAsync($"tollgate: open this URL in a browser to sign in (waiting on {redirectUri}):");
        await Console.Out.WriteLineAsync(url);
        await Console.Out.FlushAsync(ct);
        TryOpenBrowser(url);

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(LoginTimeout);
        while (true)
        {
            TcpClient connection;
            try
            {
                connection = await listener.AcceptTcpClientAsync(timeout.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                return new LoginResult(null, $"no redirect arrived at {redirectUri} within {LoginTimeout.TotalMinutes} minutes");
            }
            using (connection)
            {
                var stream = connection.GetStream();
                var target = await ReadRequestTargetAsync(stream, timeout.Token);
                if (target is null || !Uri.TryCreate(redirectUri, target, out var requested) || requested.AbsolutePath != path)
                {
                    await RespondAsync(stream, 404, "Not found.", timeout.Token);
                    continue;
                }
                var parameters = ParseQuery(requested.Query);
                if (parameters.GetValueOrDefault("state") != state)
                {
                    await RespondAsync(stream, 400, "The sign-in answer did not carry the expected state; tollgate login stopped.", timeout.Token);
                    return new LoginResult(null, "the redirect's state does not match the one sent (possible forgery); nothing was stored");
                }
                if (parameters.GetValueOrDefault("error") is { } error)
                {
                    var description = parameters.GetValueOrDefault("error_description");
                    await RespondAsync(stream, 400, $"Sign-in failed: {error}. You can close this window.", timeout.Token);
                    return new LoginResult(null, $"authorization failed: {error}{(description is null ? "" : $": {description}")}");
                }
                if (parameters.GetValueOrDefault("code") is not { Length: > 0 } code)
                {
                    await RespondAsync(stream, 400, "The sign-in answer carried no code.", timeout.Token);
                    return new LoginResult(null, "the redirect carried no authorization code");
                }
                try
                {
                    var tokens = await client.ExchangeCodeAsync(code, redirectUri, verifier, ct);
                    await RespondAsync(stream, 200, "Signed in. You can close this window and return to the terminal.", timeout.Token);
                    return new LoginResult(tokens, null);
                }
                catch (TokenErrorException e)
                {
                    await RespondAsync(stream, 400, "Sign-in failed while exchanging the code; see the terminal.", timeout.Token);
                    return new LoginResult(null, e is ReauthorizationRequiredException ? $"the authorization code was refused: {e.Message}" : e.Message);
                }
            }
        }
    }

    private static async Task<string?> ReadRequestTargetAsync(NetworkStream stream, CancellationToken ct)
    {
        // Read the request head (up to 16 KiB); only the request line matters.
        var buffer = new byte[16 * 1024];
        var length = 0;
        while (length < buffer.Length)
        {
            var read = await stream.ReadAsync(buffer.AsMemory(length), ct);
            if (read == 0)
                break;
            length += read;
            if (buffer.AsSpan(0, length).IndexOf("\r\n\r\n"u8) >= 0)
                break;
        }
        var head = Encoding.ASCII.GetString(buffer, 0, length);
        var line = head.Split("\r\n", 2)[0].Split(' ');
        return line.Length == 3 && line[0] == "GET" ? line[1] : null;
    }

    private static async Task RespondAsync(NetworkStream stream, int status, string message, CancellationToken ct)
    {
        var body = Encoding.UTF8.GetBytes($"<!doctype html><meta charset=utf-8><title>tollgate login</title><p>{WebUtility.HtmlEncode(message)}</p>\n");
        var reason = status switch { 200 => "OK", 404 => "Not Found", _ => "Bad Request" };
        var head = Encoding.ASCII.GetBytes($"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {body.Length}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n");
        try
        {
            await stream.WriteAsync(head, ct);
            await stream.WriteAsync(body, ct);
        }
        catch (IOException)
        {
            // The browser went away; the outcome is reported in the terminal anyway.
        }
    }

    private static Dictionary<string, string> ParseQuery(string query)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = pair.Split('=', 2);
            var key = Uri.UnescapeDataString(parts[0].Replace('+', ' '));
            var value = parts.Length == 2 ? Uri.UnescapeDataString(parts[1].Replace('+', ' ')) : "";
            result.TryAdd(key, value);
        }
        return result;
    }

    /// <summary>Opens the URL with xdg-open when a desktop session exists; never fails.</summary>
    private static void TryOpenBrowser(string url)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsFreeBSD())
            return;
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DISPLAY")) && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("WAYLAND_DISPLAY")))
            return;
        try
        {
            var start = new ProcessStartInfo("xdg-open") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            start.ArgumentList.Add(url);
            using var process = Process.Start(start);
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            // No xdg-open: the printed URL is enough.
        }
    }
}
