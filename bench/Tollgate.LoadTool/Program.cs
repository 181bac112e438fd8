// tollgate-load: a closed-loop, rotation-aware load generator for a Login with Amazon style token service.
//
//   tollgate-load BASE_URL[,BASE_URL...] --mode refresh|client_credentials|code|tokeninfo --client-id X [--client-secret Y]
//                 [--seed-file FILE] [--code-file FILE --redirect-uri URI] [--scope S]
//                 [-c CONNECTIONS] [-d SECONDS] [--warmup SECONDS] [--dump-tokens FILE] [--received FILE]
//
// Closed loop: each of the C workers sends one request, waits for the answer, and sends the next,
// so latency and throughput are measured together and the server is never pushed past what it answers.
// Rotation-aware: in refresh mode each worker keeps its own chain and always continues with the
// refresh_token the server returned last, as the Login with Amazon documentation tells clients to.
// Several base URLs (comma-separated) spread the workers over several nodes, worker i on URL i mod n:
// the load balancing of a round-robin balancer, without one in the measurement.
// The output line has the shape of ../shared/bench/loadgen's, so scripts can parse either:
//   mode=refresh c=16 ok=12345 errors=0 rps=1234 p50_ms=1.20 p99_ms=3.40
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Tollgate.LoadTool;

var options = LoadOptions.Parse(args);
if (options is null)
{
    Console.Error.WriteLine("usage: tollgate-load BASE_URL[,BASE_URL...] --mode refresh|client_credentials|code|tokeninfo --client-id X [--client-secret Y] "
        + "[--seed-file F] [--code-file F --redirect-uri U] [--scope S] [-c N] [-d SECONDS] [--warmup SECONDS] [--dump-tokens F] [--received F]");
    return 2;
}

using var http = new HttpClient(new SocketsHttpHandler
{
    MaxConnectionsPerServer = options.Connections,
    PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
    UseProxy = false,
    AutomaticDecompression = DecompressionMethods.None,
})
{
    Timeout = TimeSpan.FromSeconds(30),
};
var clients = options.BaseUrls.Select(url => new TokenClient(http, options, url)).ToArray();

// Each worker's starting state: a refresh token (refresh), an access token (tokeninfo), nothing otherwise.
var state = new string?[options.Connections];
string[] seeds = options.SeedFile is null ? [] : [.. File.ReadLines(options.SeedFile).Where(l => l.Length > 0)];
if (options.Mode is Mode.Refresh or Mode.TokenInfo)
{
    if (seeds.Length < options.Connections && options.Mode == Mode.Refresh)
    {
        // Two workers rotating one chain would race each other into reuse detection.
        Console.Error.WriteLine($"need at least {options.Connections} refresh tokens in --seed-file, found {seeds.Length}");
        return 2;
    }
    for (int i = 0; i < options.Connections; i++)
    {
        if (options.Mode == Mode.Refresh)
        {
            state[i] = seeds[i];
            continue;
        }
        // tokeninfo: an access token per worker, from a refresh token if given, else client_credentials.
        var first = seeds.Length > 0
            ? await clients[i % clients.Length].SendAsync(Mode.Refresh, seeds[i % seeds.Length])
            : await clients[i % clients.Length].SendAsync(Mode.ClientCredentials, null);
        if (!first.Ok)
        {
            Console.Error.WriteLine($"could not obtain an access token for tokeninfo: {first.Error}");
            return 2;
        }
        if (first.RefreshToken is not null && seeds.Length > 0)
        {
            seeds[i % seeds.Length] = first.RefreshToken;
        }
        state[i] = first.AccessToken;
    }
}
var codes = new ConcurrentQueue<string>(options.Mode == Mode.Code && options.CodeFile is not null
    ? File.ReadLines(options.CodeFile).Where(l => l.Length > 0)
    : []);
if (options.Mode == Mode.Code && codes.IsEmpty)
{
    Console.Error.WriteLine("code mode needs --code-file with one unused authorization code per line");
    return 2;
}

var received = options.ReceivedFile is null ? null : new ConcurrentQueue<string>();
var latencies = new List<double>[options.Connections];
long ok = 0, errors = 0;
string? firstError = null;
var clock = Stopwatch.StartNew();
var warmup = TimeSpan.FromSeconds(options.WarmupSeconds);
var end = warmup + TimeSpan.FromSeconds(options.Seconds);
bool ranOutOfCodes = false;

var workers = Enumerable.Range(0, options.Connections).Select(w => Task.Run(async () =>
{
    var mine = latencies[w] = new List<double>(16_384);
    var client = clients[w % clients.Length];
    while (clock.Elapsed < end)
    {
        string? input = state[w];
        if (options.Mode == Mode.Code && !codes.TryDequeue(out input))
        {
            ranOutOfCodes = true;
            return;
        }
        long t0 = Stopwatch.GetTimestamp();
        var result = await client.SendAsync(options.Mode, input);
        double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        bool counted = clock.Elapsed > warmup;
        if (result.Ok)
        {
            if (options.Mode == Mode.Refresh && result.RefreshToken is { } next)
            {
                state[w] = next;
                received?.Enqueue(next);
            }
            if (counted)
            {
                Interlocked.Increment(ref ok);
                mine.Add(ms);
            }
            continue;
        }
        if (counted)
        {
            Interlocked.Increment(ref errors);
        }
        Interlocked.CompareExchange(ref firstError, result.Error, null);
        if (options.Mode == Mode.Refresh && result.Status is 400 or 401)
        {
            return; // a refused chain cannot continue: it would only count the same refusal again
        }
    }
})).ToArray();
await Task.WhenAll(workers);

double measured = Math.Max(0.001, (clock.Elapsed - warmup).TotalSeconds);
if (options.DumpTokensFile is not null)
{
    // Each worker's chain head replaces the seed it started from; seeds no worker used stay, so the
    // file can seed the next run, at any concurrency up to its length.
    var heads = seeds.Length >= state.Length ? seeds.ToArray() : new string[state.Length];
    for (int i = 0; i < state.Length; i++)
    {
        heads[i] = options.Mode == Mode.Refresh ? state[i] ?? "" : heads[i] ?? "";
    }
    await File.WriteAllLinesAsync(options.DumpTokensFile, heads);
}
if (received is not null)
{
    await File.WriteAllLinesAsync(options.ReceivedFile!, received);
}
var all = latencies.SelectMany(l => l).ToArray();
Array.Sort(all);
double Percentile(double q) => all.Length == 0 ? double.NaN : all[Math.Min(all.Length - 1, (int)(q * all.Length))];
var inv = CultureInfo.InvariantCulture;
Console.WriteLine(string.Create(inv,
    $"mode={options.ModeName} c={options.Connections} ok={ok} errors={errors} rps={ok / measured:F0} p50_ms={Percentile(0.5):F2} p99_ms={Percentile(0.99):F2}"));
if (firstError is not null)
{
    Console.WriteLine($"first_error: {firstError[..Math.Min(300, firstError.Length)]}");
}
if (ranOutOfCodes)
{
    Console.WriteLine("note: ran out of authorization codes before the end; give more with --code-file");
}
return 0;

namespace Tollgate.LoadTool
{
    internal enum Mode
    {
        Refresh,
        ClientCredentials,
        Code,
        TokenInfo,
    }

    internal sealed record LoadOptions(
        Uri[] BaseUrls, Mode Mode, string ModeName, string ClientId, string? ClientSecret, string? SeedFile, string? CodeFile,
        string RedirectUri, string Scope, int Connections, int Seconds, double WarmupSeconds, string? DumpTokensFile, string? ReceivedFile)
    {
        public static LoadOptions? Parse(string[] args)
        {
            if (args.Length == 0 || args[0].StartsWith('-'))
            {
                return null;
            }
            var list = args.ToList();
            string? Opt(string name) => list.IndexOf(name) is var i and >= 0 && i + 1 < list.Count ? list[i + 1] : null;
            string modeName = Opt("--mode") ?? "refresh";
            Mode? mode = modeName switch
            {
                "refresh" => Mode.Refresh,
                "client_credentials" => Mode.ClientCredentials,
                "code" or "authorization_code" => Mode.Code,
                "tokeninfo" => Mode.TokenInfo,
                _ => null,
            };
            if (mode is null || Opt("--client-id") is not { } clientId)
            {
                return null;
            }
            // Accept the token URL itself too (what ../shared/bench/loadgen takes).
            var roots = args[0].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(url => url.EndsWith("/auth/o2/token", StringComparison.Ordinal) ? url[..^"/auth/o2/token".Length] : url.TrimEnd('/'))
                .Select(root => new Uri(root + "/")).ToArray();
            int seconds = int.Parse(Opt("-d") ?? "10", CultureInfo.InvariantCulture);
            return new LoadOptions(
                roots, mode.Value, modeName, clientId, Opt("--client-secret"), Opt("--seed-file"), Opt("--code-file"),
                Opt("--redirect-uri") ?? "https://bench.example/cb", Opt("--scope") ?? "profile",
                int.Parse(Opt("-c") ?? "16", CultureInfo.InvariantCulture), seconds,
                double.Parse(Opt("--warmup") ?? Math.Min(2, seconds / 5.0).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture),
                Opt("--dump-tokens"), Opt("--received"));
        }
    }

    internal readonly record struct Outcome(bool Ok, int Status, string? AccessToken, string? RefreshToken, string? Error);

    /// <summary>Sends one request of a mode and reads the two tokens out of the answer without building a DOM.</summary>
    internal sealed class TokenClient(HttpClient http, LoadOptions options, Uri baseUrl)
    {
        private readonly Uri _token = new(baseUrl, "auth/o2/token");
        private readonly string _credentials = options.ClientSecret is null
            ? $"&client_id={Uri.EscapeDataString(options.ClientId)}"
            : $"&client_id={Uri.EscapeDataString(options.ClientId)}&client_secret={Uri.EscapeDataString(options.ClientSecret)}";

        public async Task<Outcome> SendAsync(Mode mode, string? input)
        {
            try
            {
                using var request = mode switch
                {
                    Mode.TokenInfo => new HttpRequestMessage(HttpMethod.Get,
                        new Uri(baseUrl, "auth/o2/tokeninfo?access_token=" + Uri.EscapeDataString(input!))),
                    _ => new HttpRequestMessage(HttpMethod.Post, _token) { Content = Form(mode, input) },
                };
                using var response = await http.SendAsync(request, HttpCompletionOption.ResponseContentRead);
                byte[] body = await response.Content.ReadAsByteArrayAsync();
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    return new Outcome(false, (int)response.StatusCode, null, null, $"{(int)response.StatusCode} {Encoding.UTF8.GetString(body)}");
                }
                return Read(mode, body);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
            {
                return new Outcome(false, 0, null, null, e.Message);
            }
        }

        private ByteArrayContent Form(Mode mode, string? input)
        {
            string form = mode switch
            {
                Mode.Refresh => "grant_type=refresh_token&refresh_token=" + Uri.EscapeDataString(input!),
                Mode.Code => $"grant_type=authorization_code&code={Uri.EscapeDataString(input!)}&redirect_uri={Uri.EscapeDataString(options.RedirectUri)}",
                _ => "grant_type=client_credentials&scope=" + Uri.EscapeDataString(options.Scope),
            };
            var content = new ByteArrayContent(Encoding.UTF8.GetBytes(form + _credentials));
            content.Headers.ContentType = new("application/x-www-form-urlencoded");
            return content;
        }

        private static Outcome Read(Mode mode, byte[] body)
        {
            var reader = new Utf8JsonReader(body);
            string? access = null, refresh = null;
            bool sawAudience = false;
            while (reader.Read())
            {
                if (reader.TokenType != JsonTokenType.PropertyName || reader.CurrentDepth != 1)
                {
                    continue;
                }
                if (reader.ValueTextEquals("access_token"u8))
                {
                    reader.Read();
                    access = reader.GetString();
                }
                else if (reader.ValueTextEquals("refresh_token"u8))
                {
                    reader.Read();
                    refresh = reader.GetString();
                }
                else if (reader.ValueTextEquals("aud"u8))
                {
                    sawAudience = true;
                }
            }
            bool ok = mode == Mode.TokenInfo ? sawAudience : access is not null && (mode != Mode.Refresh || refresh is not null);
            return new Outcome(ok, 200, access, refresh, ok ? null : "200 without the expected fields: " + Encoding.UTF8.GetString(body));
        }
    }
}
