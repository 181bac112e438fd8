using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Tollgate.Client.Tests;

/// <summary>
/// A real Kestrel token endpoint on 127.0.0.1 whose behaviour the test controls: it counts requests, rotates refresh
/// tokens strictly (an old one is rejected at once, so any race shows up as invalid_grant), can answer 429/503 with
/// Retry-After for a while, and serves a protected <c>/api</c> resource.
/// </summary>
internal sealed class FakeTokenServer : IAsyncDisposable
{
    public const string ClientId = "amzn1.application-oa2-client.0123456789abcdef0123456789abcdef";
    public const string ClientSecret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    private readonly WebApplication _app;
    private readonly ConcurrentDictionary<string, bool> _refreshTokens = new();
    private readonly ConcurrentDictionary<string, bool> _accessTokens = new();
    private readonly ConcurrentQueue<(HttpStatusCode Status, int? RetryAfter)> _failures = new();
    private int _tokenRequests;
    private int _refreshRequests;
    private int _apiRequests;
    private int _sequence;

    private FakeTokenServer(WebApplication app) => _app = app;

    /// <summary>Whether refresh tokens rotate (a new one on every refresh, the old one dead at once).</summary>
    public bool Rotate { get; set; } = true;

    /// <summary>Lifetime announced in <c>expires_in</c>.</summary>
    public int ExpiresIn { get; set; } = 3600;

    /// <summary>Delay before answering a refresh, to widen race windows.</summary>
    public TimeSpan RefreshDelay { get; set; }

    /// <summary>When set, every <c>/api</c> request is answered 401.</summary>
    public bool ApiAlwaysUnauthorized { get; set; }

    public Uri TokenEndpoint { get; private set; } = null!;

    public Uri ApiEndpoint { get; private set; } = null!;

    public int TokenRequests => Volatile.Read(ref _tokenRequests);

    public int RefreshRequests => Volatile.Read(ref _refreshRequests);

    public int ApiRequests => Volatile.Read(ref _apiRequests);

    public ConcurrentQueue<IReadOnlyDictionary<string, string>> Forms { get; } = new();

    public ConcurrentQueue<string> InvalidGrants { get; } = new();

    public ConcurrentQueue<string> ApiBodies { get; } = new();

    public static async Task<FakeTokenServer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var server = new FakeTokenServer(app);
        app.MapPost("/auth/o2/token", async (HttpContext context) => await (await server.TokenAsync(context)).ExecuteAsync(context));
        app.Map("/api", async (HttpContext context) => await (await server.ApiAsync(context)).ExecuteAsync(context));
        await app.StartAsync();
        var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        server.TokenEndpoint = new Uri(address, "/auth/o2/token");
        server.ApiEndpoint = new Uri(address, "/api");
        return server;
    }

    /// <summary>Answers the next <paramref name="count"/> token requests with <paramref name="status"/>.</summary>
    public void FailNext(int count, HttpStatusCode status, int? retryAfterSeconds)
    {
        for (var i = 0; i < count; i++)
            _failures.Enqueue((status, retryAfterSeconds));
    }

    /// <summary>Creates a refresh token the server accepts, as if a login had happened.</summary>
    public string IssueRefreshToken()
    {
        var token = $"Atzr|IwEB{Interlocked.Increment(ref _sequence)}-{Guid.NewGuid():N}";
        _refreshTokens[token] = true;
        return token;
    }

    public void RevokeAllAccessTokens() => _accessTokens.Clear();

    public bool IsValidRefreshToken(string token) => _refreshTokens.ContainsKey(token);

    public ValueTask DisposeAsync() => _app.DisposeAsync();

    private async Task<IResult> TokenAsync(HttpContext context)
    {
        Interlocked.Increment(ref _tokenRequests);
        var form = await context.Request.ReadFormAsync();
        var fields = form.ToDictionary(f => f.Key, f => f.Value.ToString());
        Forms.Enqueue(fields);
        var requestId = Guid.NewGuid().ToString();
        context.Response.Headers["x-amzn-RequestId"] = requestId;

        if (_failures.TryDequeue(out var failure))
        {
            if (failure.RetryAfter is { } seconds)
                context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return Results.Json(new { error = failure.Status == HttpStatusCode.TooManyRequests ? "throttled" : "temporarily_unavailable", request_id = requestId }, statusCode: (int)failure.Status);
        }
        if (fields.GetValueOrDefault("client_id") != ClientId || fields.GetValueOrDefault("client_secret") is { } secret && secret != ClientSecret)
            return Results.Json(new { error = "invalid_client", error_description = "Client authentication failed", request_id = requestId }, statusCode: 401);

        switch (fields.GetValueOrDefault("grant_type"))
        {
            case "authorization_code":
                if (fields.GetValueOrDefault("code") != "good-code")
                    return InvalidGrant("code", requestId);
                return Issue(withRefreshToken: true);
            case "refresh_token":
                Interlocked.Increment(ref _refreshRequests);
                if (RefreshDelay > TimeSpan.Zero)
                    await Task.Delay(RefreshDelay);
                var presented = fields.GetValueOrDefault("refresh_token") ?? "";
                if (!_refreshTokens.ContainsKey(presented))
                    return InvalidGrant("refresh_token", requestId);
                if (Rotate)
                {
                    _refreshTokens.TryRemove(presented, out _);
                    return Issue(withRefreshToken: true);
                }
                return Issue(withRefreshToken: false, keep: presented);
            case "client_credentials":
                return Issue(withRefreshToken: false);
            default:
                return Results.Json(new { error = "unsupported_grant_type", request_id = requestId }, statusCode: 400);
        }
    }

    private IResult InvalidGrant(string parameter, string requestId)
    {
        InvalidGrants.Enqueue(parameter);
        // No request_id in the body: the client must take it from the header.
        return Results.Json(new { error = "invalid_grant", error_description = $"The request has an invalid grant parameter : {parameter}" }, statusCode: 400);
    }

    private IResult Issue(bool withRefreshToken, string? keep = null)
    {
        var n = Interlocked.Increment(ref _sequence);
        var access = $"Atza|IwEB{n}-{Guid.NewGuid():N}";
        _accessTokens[access] = true;
        string? refresh = null;
        if (withRefreshToken)
            refresh = IssueRefreshToken();
        else if (keep is not null)
            refresh = keep; // Amazon's service returns the same refresh token when it does not rotate.
        return Results.Json(new Dictionary<string, object?>
        {
            ["access_token"] = access,
            ["refresh_token"] = refresh,
            ["token_type"] = "bearer",
            ["expires_in"] = ExpiresIn,
        });
    }

    private async Task<IResult> ApiAsync(HttpContext context)
    {
        Interlocked.Increment(ref _apiRequests);
        using (var reader = new StreamReader(context.Request.Body))
            ApiBodies.Enqueue(await reader.ReadToEndAsync());
        var header = context.Request.Headers.Authorization.ToString();
        if (ApiAlwaysUnauthorized || !header.StartsWith("Bearer ", StringComparison.Ordinal) || !_accessTokens.ContainsKey(header["Bearer ".Length..]))
            return Results.StatusCode(401);
        return Results.Text("hello");
    }
}
