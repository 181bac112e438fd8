using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Tollgate.Client;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Settings of the services registered by <see cref="TollgateClientServiceCollectionExtensions.AddTollgateClient"/>.</summary>
public sealed class TollgateClientOptions
{
    /// <summary>The credentials file; <see cref="FileTokenStore.DefaultPath"/> when <see langword="null"/>.</summary>
    public string? StorePath { get; set; }

    /// <summary>The key file; <c>&lt;StorePath&gt;.key</c> when <see langword="null"/>.</summary>
    public string? KeyPath { get; set; }

    /// <summary>How long before expiry the access token is refreshed. Default 60 s.</summary>
    public TimeSpan RefreshMargin { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How long to wait for another process's refresh. Default 60 s.</summary>
    public TimeSpan LockTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Retries of token requests.</summary>
    public TokenRetryOptions Retry { get; } = new();
}

/// <summary>Registers Tollgate's client in a service collection.</summary>
public static class TollgateClientServiceCollectionExtensions
{
    /// <summary>The name of the <see cref="HttpClient"/> used for token requests (with retries, without bearer tokens).</summary>
    public const string TokenHttpClientName = "Tollgate.Client.TokenEndpoint";

    /// <summary>
    /// Registers <see cref="IRefreshTokenStore"/> (a <see cref="FileTokenStore"/> unless one is registered already),
    /// a singleton <see cref="AccessTokenProvider"/>, <see cref="BearerTokenHandler"/>, and a named HTTP client for the
    /// token endpoint with retries on 429/5xx. Add bearer tokens to an API client with
    /// <see cref="AddTollgateBearerToken"/>.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Adjusts the settings.</param>
    /// <returns>The service collection.</returns>
    public static IServiceCollection AddTollgateClient(this IServiceCollection services, Action<TollgateClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<TollgateClientOptions>();
        if (configure is not null)
            options.Configure(configure);

        services.AddHttpClient(TokenHttpClientName, client => client.Timeout = Timeout.InfiniteTimeSpan)
            .AddResilienceHandler("tollgate-token", (builder, context) =>
                TokenRetry.Configure(builder, context.ServiceProvider.GetRequiredService<IOptions<TollgateClientOptions>>().Value.Retry));

        services.TryAddSingleton<IRefreshTokenStore>(sp =>
        {
            var o = sp.GetRequiredService<IOptions<TollgateClientOptions>>().Value;
            return new FileTokenStore(o.StorePath ?? FileTokenStore.DefaultPath, o.KeyPath);
        });
        services.TryAddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<TollgateClientOptions>>().Value;
            return new AccessTokenProvider(
                sp.GetRequiredService<IRefreshTokenStore>(),
                sp.GetRequiredService<IHttpClientFactory>().CreateClient(TokenHttpClientName),
                new AccessTokenProviderOptions { RefreshMargin = o.RefreshMargin, LockTimeout = o.LockTimeout },
                sp.GetService<TimeProvider>());
        });
        services.TryAddTransient<BearerTokenHandler>();
        return services;
    }

    /// <summary>
    /// Adds <see cref="BearerTokenHandler"/> to an HTTP client, so its requests carry the access token and are retried
    /// once after a refresh on 401. Requires <see cref="AddTollgateClient"/>.
    /// </summary>
    /// <param name="builder">The HTTP client builder from <c>AddHttpClient</c>.</param>
    /// <returns>The builder.</returns>
    public static IHttpClientBuilder AddTollgateBearerToken(this IHttpClientBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddHttpMessageHandler<BearerTokenHandler>();
    }
}
