using System.Data.Common;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tollgate.Server.Crypto;
using Tollgate.Server.Endpoints;
using Tollgate.Server.Grants;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;
using Tollgate.Server.Web;

namespace Tollgate.Server;

/// <summary>Builds the web application: services, the request-id and error middleware, and the routes.</summary>
internal static class TollgateServer
{
    /// <summary>
    /// Builds a server over an open, migrated store. <paramref name="configure"/> lets tests and the
    /// CLI adjust options after configuration is read (tests inject a fake clock through <paramref name="time"/>).
    /// </summary>
    public static async Task<WebApplication> BuildAsync(
        string[] args, ITokenStore store, TimeProvider time, Action<TollgateOptions>? configure = null, CancellationToken ct = default)
    {
        var builder = WebApplication.CreateSlimBuilder(args);
        builder.Configuration.AddTollgateSources();
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        // Data Protection warns that its keys are stored unencrypted; that is deliberate (see StoreXmlRepository).
        builder.Logging.AddFilter("Microsoft.AspNetCore.DataProtection", LogLevel.Error);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // Slow-client (slowloris) defence: headers must arrive within 10 s and bodies at a minimum rate.
            kestrel.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(10);
            kestrel.Limits.MaxRequestHeadersTotalSize = 32 * 1024;
        });

        var options = TollgateOptions.Load(builder.Configuration);
        configure?.Invoke(options);
        if (options.Validate() is { } problem)
        {
            throw new InvalidOperationException($"invalid configuration: {problem}");
        }

        var keys = await store.GetOrCreateAccessTokenKeysAsync(Secrets.NewAccessTokenKey(), time.GetUtcNow(), ct);

        var services = builder.Services;
        services.AddSingleton(store);
        services.AddSingleton(time);
        services.AddSingleton(options);
        services.AddSingleton(_ => new AccessTokenCodec(keys.Keys, keys.CurrentKeyId));
        services.AddSingleton<ProfileCache>();
        services.AddHostedService(sp => sp.GetRequiredService<ProfileCache>());
        services.AddSingleton<Housekeeping>();
        services.AddHostedService(sp => sp.GetRequiredService<Housekeeping>());
        services.AddSingleton<ClientAuthentication>();
        services.AddSingleton<AccessTokenIssuer>();
        services.AddSingleton<AccessTokenValidator>();
        services.AddSingleton<IGrant, AuthorizationCodeGrant>();
        services.AddSingleton<IGrant, RefreshTokenGrant>();
        services.AddSingleton<IGrant, ClientCredentialsGrant>();
        services.AddSingleton<TokenEndpoint>();
        services.AddSingleton<TokenInfoEndpoint>();
        services.AddSingleton<UserProfileEndpoint>();
        services.AddWebPages(store, time);

        var app = builder.Build();
        app.Use(RequestIdAndErrors);
        MapRoutes(app);
        return app;
    }

    private static void MapRoutes(WebApplication app)
    {
        var token = app.Services.GetRequiredService<TokenEndpoint>();
        var tokenInfo = app.Services.GetRequiredService<TokenInfoEndpoint>();
        var userProfile = app.Services.GetRequiredService<UserProfileEndpoint>();

        app.MapPost("/auth/o2/token", token.HandleAsync);
        app.MapGet("/auth/o2/tokeninfo", tokenInfo.HandleAsync);
        app.MapGet("/user/profile", userProfile.HandleAsync);
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        WebPages.MapWebPages(app);

        // Wrong methods and unknown paths get the protocol's JSON too, never an empty body.
        app.MapMethods("/auth/o2/token", ["GET", "PUT", "DELETE", "PATCH", "HEAD"], http => MethodNotAllowed(http, "POST"));
        app.MapMethods("/auth/o2/tokeninfo", ["POST", "PUT", "DELETE", "PATCH"], http => MethodNotAllowed(http, "GET"));
        app.MapFallback(http => ProtocolResponse.WriteErrorAsync(http,
            new OAuthError("invalid_request", $"There is nothing at {TokenRequestReader.Printable(http.Request.Path.Value)}; the token endpoint is POST /auth/o2/token.", 404)));
    }

    private static Task MethodNotAllowed(HttpContext http, string allowed)
    {
        http.Response.Headers.Allow = allowed;
        return ProtocolResponse.WriteErrorAsync(http, new OAuthError("invalid_request", $"Use {allowed} for this endpoint.", 405));
    }

    /// <summary>
    /// Every response carries a request id (<c>x-amzn-RequestId</c>, also in error bodies and logs).
    /// Anything a handler did not expect becomes a protocol error without a stack trace: a store that
    /// cannot be reached or written is <c>temporarily_unavailable</c> (503, retry), anything else <c>server_error</c>.
    /// </summary>
    private static async Task RequestIdAndErrors(HttpContext http, RequestDelegate next)
    {
        http.TraceIdentifier = Guid.NewGuid().ToString();
        http.Response.Headers[ProtocolResponse.RequestIdHeader] = http.TraceIdentifier;
        try
        {
            await next(http);
        }
        catch (Exception e) when (!http.Response.HasStarted && !http.RequestAborted.IsCancellationRequested)
        {
            var logger = http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Tollgate.Errors");
            bool storeTrouble = e is DbException or Storage.Sqlite.StoreSchemaException;
            logger.LogError(e, "Request {RequestId} failed: {Kind}", http.TraceIdentifier, storeTrouble ? "store unavailable" : "unexpected");
            http.Response.Clear();
            http.Response.Headers[ProtocolResponse.RequestIdHeader] = http.TraceIdentifier;
            await ProtocolResponse.WriteErrorAsync(http, storeTrouble
                ? OAuthError.TemporarilyUnavailable("The token store is temporarily unavailable; retry shortly.")
                : OAuthError.ServerError());
        }
    }
}
