using System.Data.Common;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Tollgate.Server.Audit;
using Tollgate.Server.Crypto;
using Tollgate.Server.Endpoints;
using Tollgate.Server.Grants;
using Tollgate.Server.Hardening;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;
using Tollgate.Server.Telemetry;
using Tollgate.Server.Web;

namespace Tollgate.Server;

/// <summary>Builds the web application: services, the request-id, limits and error middleware, and the routes.</summary>
internal static class TollgateServer
{
    /// <summary>
    /// Builds a server over an open, migrated store. <paramref name="configure"/> lets tests and the
    /// CLI adjust options after configuration is read (tests inject a fake clock through <paramref name="time"/>).
    /// A bad configuration throws <see cref="InvalidOperationException"/> with a message starting
    /// "invalid configuration: " and naming the key.
    /// </summary>
    public static async Task<WebApplication> BuildAsync(
        string[] args, ITokenStore store, TimeProvider time, Action<TollgateOptions>? configure = null, CancellationToken ct = default)
    {
        WebApplicationBuilder builder;
        TollgateOptions options;
        MasterKeys? master;
        try
        {
            // The host's own appsettings.json sources watch the content root (the working directory, where the
            // default tollgate.db lives) for changes, recursively: every commit to the database then woke a watcher
            // thread, 10% of the CPU under a rotate load in a perf profile. Tollgate reads tollgate.json once at
            // start (restart to apply a change), so nothing needs the watch.
            builder = WebApplication.CreateSlimBuilder([.. args, "--hostBuilder:reloadConfigOnChange=false"]);
            builder.Configuration.AddTollgateSources();
            options = TollgateOptions.Load(builder.Configuration);
            configure?.Invoke(options);
            if (options.Validate() is { } problem)
            {
                throw new TollgateConfigurationException(problem);
            }
            master = MasterKeys.From(options);
        }
        catch (Exception e) when (e is TollgateConfigurationException or InvalidDataException or FormatException)
        {
            throw new InvalidOperationException($"invalid configuration: {e.Message}", e);
        }

        ConfigureLogging(builder.Logging, options.Telemetry);
        // Data Protection warns that its keys are stored unencrypted; that is deliberate (see StoreXmlRepository).
        builder.Logging.AddFilter("Microsoft.AspNetCore.DataProtection", LogLevel.Error);
        builder.WebHost.ConfigureKestrel(kestrel => RequestLimits.ConfigureKestrel(kestrel, options.Limits));

        var services = builder.Services;
        services.AddSingleton(store);
        services.AddSingleton(time);
        services.AddSingleton(options);
        services.AddSingleton<AuditTrail>();
        services.AddHostedService(sp => sp.GetRequiredService<AuditTrail>());
        services.AddSingleton(sp => new KeyRing(store, master, time, options, sp.GetRequiredService<AuditTrail>(), sp.GetRequiredService<ILogger<KeyRing>>()));
        services.AddHostedService(sp => sp.GetRequiredService<KeyRing>());
        services.AddSingleton(sp => sp.GetRequiredService<KeyRing>().Codec);
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
        services.AddTollgateRateLimiting(options.RateLimits);
        AddTelemetry(services, options.Telemetry);

        var app = builder.Build();
        try
        {
            // Before the first request: the codec must have its keys, and a master key that cannot open them is fatal.
            await app.Services.GetRequiredService<KeyRing>().RefreshAsync(ct);
        }
        catch (TollgateConfigurationException e)
        {
            await app.DisposeAsync();
            throw new InvalidOperationException($"invalid configuration: {e.Message}", e);
        }
        if (master is null)
        {
            app.Logger.LogWarning("Tollgate:MasterKey is not set: access-token keys are stored unencrypted (see docs/configuration.md)");
        }
        var risks = await store.DescribeRisksAsync(ct);
        if (risks.ConnectionBudget is { } overBudget)
        {
            app.Logger.LogWarning("{Warning}", overBudget);
        }
        foreach (string risk in risks.Durability)
        {
            app.Logger.LogWarning("{Warning}", risk);
        }

        var limits = options.Limits;
        app.Use((http, next) => RequestIdAndErrors(http, next, limits));
        app.UseRateLimiter();
        MapRoutes(app, options);
        return app;
    }

    private static void ConfigureLogging(ILoggingBuilder logging, TelemetryOptions telemetry)
    {
        logging.ClearProviders();
        if (telemetry.LogFormat == "json")
        {
            // One JSON object per line: timestamp, level, category, message and its named values (RequestId, Error...).
            logging.AddJsonConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            });
        }
        else
        {
            logging.AddSimpleConsole(o => o.SingleLine = true);
        }
        logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        // Kestrel logs a refused slow or malformed request at Information/Debug; the client got its answer, and a flood
        // of them must not become a flood of log lines.
        logging.AddFilter("Microsoft.AspNetCore.Server.Kestrel", LogLevel.Error);
    }

    private static void AddTelemetry(IServiceCollection services, TelemetryOptions telemetry)
    {
        var otel = services.AddOpenTelemetry().ConfigureResource(r => r.AddService("tollgate"));
        otel.WithMetrics(metrics =>
        {
            metrics.AddMeter(TollgateTelemetry.Name, "Microsoft.AspNetCore.Server.Kestrel", "Microsoft.AspNetCore.RateLimiting")
                .AddAspNetCoreInstrumentation()
                .AddRuntimeInstrumentation();
            if (telemetry.PrometheusEnabled)
            {
                metrics.AddPrometheusExporter();
            }
            if (telemetry.OtlpEndpoint is { } endpoint)
            {
                metrics.AddOtlpExporter(o => o.Endpoint = new Uri(endpoint));
            }
        });
        if (telemetry.OtlpEndpoint is { } traceEndpoint)
        {
            // Without an exporter nothing listens, so spans cost nothing; with one, requests are sampled at the ratio.
            otel.WithTracing(tracing => tracing
                .AddSource(TollgateTelemetry.Name)
                .AddAspNetCoreInstrumentation(o => o.RecordException = false)
                .SetSampler(new ParentBasedSampler(new TraceIdRatioBasedSampler(telemetry.TraceSampleRatio)))
                .AddOtlpExporter(o => o.Endpoint = new Uri(traceEndpoint)));
        }
    }

    private static void MapRoutes(WebApplication app, TollgateOptions options)
    {
        var token = app.Services.GetRequiredService<TokenEndpoint>();
        var tokenInfo = app.Services.GetRequiredService<TokenInfoEndpoint>();
        var userProfile = app.Services.GetRequiredService<UserProfileEndpoint>();

        app.MapPost("/auth/o2/token", token.HandleAsync).RequireRateLimiting(RateLimitPolicies.Token);
        app.MapGet("/auth/o2/tokeninfo", tokenInfo.HandleAsync).RequireRateLimiting(RateLimitPolicies.Resource);
        app.MapGet("/user/profile", userProfile.HandleAsync).RequireRateLimiting(RateLimitPolicies.Resource);
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", ReadyAsync);
        if (options.Telemetry.PrometheusEnabled)
        {
            app.MapPrometheusScrapingEndpoint(options.Telemetry.MetricsPath);
        }
        WebPages.MapWebPages(app);

        // Wrong methods and unknown paths get the protocol's JSON too, never an empty body.
        app.MapMethods("/auth/o2/token", ["GET", "PUT", "DELETE", "PATCH", "HEAD"], http => MethodNotAllowed(http, "POST"));
        app.MapMethods("/auth/o2/tokeninfo", ["POST", "PUT", "DELETE", "PATCH"], http => MethodNotAllowed(http, "GET"));
        app.MapFallback(http => ProtocolResponse.WriteErrorAsync(http,
            new OAuthError("invalid_request", $"There is nothing at {TokenRequestReader.Printable(http.Request.Path.Value)}; the token endpoint is POST /auth/o2/token.", 404)));
    }

    /// <summary>
    /// Ready to serve: the store answers and its schema is the one this binary expects. Liveness (<c>/healthz</c>)
    /// does not touch the store, so an orchestrator restarts a stuck process but not one waiting for its database.
    /// </summary>
    private static async Task ReadyAsync(HttpContext http)
    {
        var store = http.RequestServices.GetRequiredService<ITokenStore>();
        var status = await store.GetSchemaStatusAsync(http.RequestAborted);
        if (!status.IsCurrent)
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.TemporarilyUnavailable(
                $"The store is at schema version {status.CurrentVersion}, this server needs {status.LatestVersion}: run tollgate db migrate."));
            return;
        }
        var codec = http.RequestServices.GetRequiredService<AccessTokenCodec>();
        await ProtocolResponse.WriteJsonAsync(http, StatusCodes.Status200OK, (status, codec), static (json, s) =>
        {
            json.WriteString("status"u8, "ready"u8);
            json.WriteNumber("schema_version"u8, s.status.CurrentVersion);
            json.WriteNumber("access_token_keys"u8, s.codec.KeyIds.Count);
        });
    }

    private static Task MethodNotAllowed(HttpContext http, string allowed)
    {
        http.Response.Headers.Allow = allowed;
        return ProtocolResponse.WriteErrorAsync(http, new OAuthError("invalid_request", $"Use {allowed} for this endpoint.", 405));
    }

    /// <summary>
    /// <paramref name="e"/> if it is a <typeparamref name="T"/>, or the <typeparamref name="T"/> it wraps. Bad input
    /// arrives either way: the endpoints that read a body themselves see Kestrel's or the form reader's exception as it
    /// is, while antiforgery, which reads a web page's form before the page runs, wraps it in its own. Looking only at
    /// the bare exception made a body over the limit posted to a page a 500 (found by FuzzTests).
    /// </summary>
    private static T? ThrownOrWrapped<T>(Exception e) where T : Exception => e as T ?? e.InnerException as T;

    /// <summary>
    /// Every response carries a request id (<c>x-amzn-RequestId</c>, also in error bodies and logs). Requests over the
    /// size limits are refused here, before routing. Anything a handler did not expect becomes a protocol error without
    /// a stack trace: a body Kestrel gave up on (too slow, too large) is its 4xx, a store that cannot be reached or
    /// written is <c>temporarily_unavailable</c> (503, retry), anything else <c>server_error</c>.
    /// </summary>
    private static async Task RequestIdAndErrors(HttpContext http, RequestDelegate next, LimitOptions limits)
    {
        http.TraceIdentifier = Secrets.NewRequestId().ToString(); // Guid.NewGuid would read /dev/urandom per request
        http.Response.Headers[ProtocolResponse.RequestIdHeader] = http.TraceIdentifier;
        if (RequestLimits.Check(http.Request, limits) is { } refusal)
        {
            await ProtocolResponse.WriteErrorAsync(http, refusal);
            return;
        }
        try
        {
            await next(http);
        }
        catch (Exception e) when (ThrownOrWrapped<BadHttpRequestException>(e) is { } refused && !http.Response.HasStarted)
        {
            http.Response.Clear();
            http.Response.Headers[ProtocolResponse.RequestIdHeader] = http.TraceIdentifier;
            // The connection cannot carry another request after a body Kestrel refused to finish reading.
            http.Response.Headers.Connection = "close";
            await ProtocolResponse.WriteErrorAsync(http, RequestLimits.FromBadRequest(refused));
        }
        catch (Exception e) when (ThrownOrWrapped<InvalidDataException>(e) is not null && !http.Response.HasStarted)
        {
            // ASP.NET Core's form reader refuses keys, values or counts over its limits this way: bad input, not a fault.
            // Antiforgery reads the form of the web pages first and wraps the same refusal in its own exception.
            http.Response.Clear();
            http.Response.Headers[ProtocolResponse.RequestIdHeader] = http.TraceIdentifier;
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.InvalidRequest("The form is malformed or exceeds the size limits."));
        }
        catch (Exception e) when (!http.Response.HasStarted && !http.RequestAborted.IsCancellationRequested)
        {
            var logger = http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Tollgate.Errors");
            bool storeTrouble = e is DbException or Storage.Sqlite.StoreSchemaException;
            if (storeTrouble)
            {
                // Expected during an outage, and the message says what failed; a stack trace per request would drown the log.
                logger.LogError("Request {RequestId} failed: store unavailable: {Error}", http.TraceIdentifier, e.Message);
            }
            else
            {
                logger.LogError(e, "Request {RequestId} failed: unexpected", http.TraceIdentifier);
            }
            http.Response.Clear();
            http.Response.Headers[ProtocolResponse.RequestIdHeader] = http.TraceIdentifier;
            await ProtocolResponse.WriteErrorAsync(http, storeTrouble
                ? OAuthError.TemporarilyUnavailable("The token store is temporarily unavailable; retry shortly.")
                : OAuthError.ServerError());
        }
    }
}
