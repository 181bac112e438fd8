// Mixed traffic against a running Tollgate for a fixed time, reporting each window's throughput, latency
// percentiles and statuses as one JSON line, so drift over a long run shows. Driven by tools/soak.sh.
// Usage: Soak URL SECONDS WINDOW_SECONDS CONCURRENCY SETUP_JSON
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json;

string url = args[0].TrimEnd('/');
int seconds = int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture);
int window = int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture);
int concurrency = int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture);
using var setup = JsonDocument.Parse(File.ReadAllText(args[4]));
var s = setup.RootElement;
string Get(string name) => s.GetProperty(name).GetString()!;
var codes = new ConcurrentQueue<string>(s.GetProperty("codes").EnumerateArray().Select(c => c.GetString()!));

using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = concurrency }) { BaseAddress = new Uri(url) };
var latencies = new ConcurrentBag<double>();
var statuses = new ConcurrentDictionary<string, long>();
string? reuseToken = null, accessToken = null;

async Task<(HttpStatusCode, JsonElement?)> Post(Dictionary<string, string> form, string kind)
{
    var started = Stopwatch.GetTimestamp();
    using var response = await http.PostAsync("/auth/o2/token", new FormUrlEncodedContent(form));
    string body = await response.Content.ReadAsStringAsync();
    latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    statuses.AddOrUpdate($"{kind}:{(int)response.StatusCode}", 1, (_, n) => n + 1);
    return (response.StatusCode, response.StatusCode == HttpStatusCode.OK ? JsonDocument.Parse(body).RootElement.Clone() : null);
}

async Task<string?> FirstRefreshToken(string clientId, string secret)
{
    if (!codes.TryDequeue(out var code)) return null;
    var (_, json) = await Post(new() { ["grant_type"] = "authorization_code", ["code"] = code, ["redirect_uri"] = Get("return_url"), ["client_id"] = clientId, ["client_secret"] = secret }, "code");
    return json?.GetProperty("refresh_token").GetString();
}

reuseToken = await FirstRefreshToken(Get("reuse_client_id"), Get("reuse_secret"));
var deadline = Stopwatch.StartNew();
var workers = Enumerable.Range(0, concurrency).Select(async w =>
{
    string? chain = await FirstRefreshToken(Get("rotate_client_id"), Get("rotate_secret"));
    for (long turn = 0; deadline.Elapsed.TotalSeconds < seconds; turn++)
    {
        try
        {
            switch (turn % 10)
            {
                case 0 or 1 or 2:
                    var (_, cc) = await Post(new() { ["grant_type"] = "client_credentials", ["scope"] = "videocentral::reporting", ["client_id"] = Get("reuse_client_id"), ["client_secret"] = Get("reuse_secret") }, "client_credentials");
                    accessToken = cc?.GetProperty("access_token").GetString() ?? accessToken;
                    break;
                case 3 or 4 when reuseToken is not null:
                    await Post(new() { ["grant_type"] = "refresh_token", ["refresh_token"] = reuseToken, ["client_id"] = Get("reuse_client_id"), ["client_secret"] = Get("reuse_secret") }, "refresh_reuse");
                    break;
                case 5 or 6 when chain is not null:
                    var (status, rotated) = await Post(new() { ["grant_type"] = "refresh_token", ["refresh_token"] = chain, ["client_id"] = Get("rotate_client_id"), ["client_secret"] = Get("rotate_secret") }, "refresh_rotate");
                    chain = rotated?.GetProperty("refresh_token").GetString() ?? chain;
                    break;
                case 7 when accessToken is not null:
                    var started = Stopwatch.GetTimestamp();
                    using (var info = await http.GetAsync("/auth/o2/tokeninfo?access_token=" + Uri.EscapeDataString(accessToken)))
                    {
                        await info.Content.ReadAsStringAsync();
                        latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                        statuses.AddOrUpdate($"tokeninfo:{(int)info.StatusCode}", 1, (_, n) => n + 1);
                    }
                    break;
                case 8 when turn % 50 == 8 && codes.TryDequeue(out var code):
                    await Post(new() { ["grant_type"] = "authorization_code", ["code"] = code, ["redirect_uri"] = Get("return_url"), ["client_id"] = Get("reuse_client_id"), ["client_secret"] = Get("reuse_secret") }, "code");
                    break;
                default:
                    // Hostile traffic: garbage and wrong grants, answered with 4xx.
                    await Post(new() { ["grant_type"] = turn % 2 == 0 ? "password" : "refresh_token", ["refresh_token"] = "Atzr|nope", ["client_id"] = Get("reuse_client_id"), ["client_secret"] = Get("reuse_secret") }, "bad");
                    break;
            }
        }
        catch (HttpRequestException e)
        {
            statuses.AddOrUpdate($"transport:{e.HttpRequestError}", 1, (_, n) => n + 1);
        }
    }
}).ToArray();

var reporter = Task.Run(async () =>
{
    int index = 0;
    while (deadline.Elapsed.TotalSeconds < seconds)
    {
        await Task.Delay(TimeSpan.FromSeconds(window));
        var sample = new List<double>();
        while (latencies.TryTake(out var l)) sample.Add(l);
        sample.Sort();
        double P(double q) => sample.Count == 0 ? 0 : sample[Math.Min(sample.Count - 1, (int)(q * sample.Count))];
        var counts = statuses.ToDictionary(k => k.Key, k => k.Value);
        statuses.Clear();
        Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["window"] = index++, ["elapsed_s"] = (int)deadline.Elapsed.TotalSeconds, ["requests_per_s"] = Math.Round(sample.Count / (double)window, 1),
            ["p50_ms"] = Math.Round(P(0.5), 2), ["p99_ms"] = Math.Round(P(0.99), 2), ["max_ms"] = Math.Round(sample.LastOrDefault(), 2), ["statuses"] = counts,
        }));
    }
});
await Task.WhenAll(workers);
await reporter;
