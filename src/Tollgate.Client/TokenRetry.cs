using System.Net;
using Microsoft.Extensions.Http.Resilience;
using Polly;

namespace Tollgate.Client;

/// <summary>Builds the resilience pipeline of token requests (retry with backoff and jitter, Retry-After, attempt timeout).</summary>
internal static class TokenRetry
{
    public static void Configure(ResiliencePipelineBuilder<HttpResponseMessage> builder, TokenRetryOptions options)
    {
        var retry = new HttpRetryStrategyOptions
        {
            MaxRetryAttempts = options.MaxRetryAttempts,
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = true,
            Delay = options.BaseDelay,
            MaxDelay = options.MaxDelay,
            // HttpClientResiliencePredicates.IsTransient: 408, 429, 5xx, HttpRequestException, attempt timeouts.
            // 400/401 (invalid_grant, invalid_client, ...) are never retried.
            ShouldHandle = args => ValueTask.FromResult(HttpClientResiliencePredicates.IsTransient(args.Outcome)),
        };
        // Honour Retry-After (seconds or HTTP date), but never wait longer than MaxRetryAfter; without the header,
        // returning null keeps the exponential backoff with jitter.
        var maxRetryAfter = options.MaxRetryAfter;
        retry.DelayGenerator = args => ValueTask.FromResult(RetryAfter(args.Outcome.Result, maxRetryAfter));
        builder.AddRetry(retry);
        builder.AddTimeout(options.AttemptTimeout);
    }

    internal static TimeSpan? RetryAfter(HttpResponseMessage? response, TimeSpan max)
    {
        var header = response?.Headers.RetryAfter;
        if (header is null)
            return null;
        TimeSpan? delay = header.Delta ?? (header.Date is { } date ? date - DateTimeOffset.UtcNow : null);
        if (delay is not { } d)
            return null;
        if (d < TimeSpan.Zero)
            d = TimeSpan.Zero;
        return d > max ? max : d;
    }

    public static HttpClient CreateHttpClient(TokenRetryOptions? options)
    {
        var builder = new ResiliencePipelineBuilder<HttpResponseMessage>();
        Configure(builder, options ?? new TokenRetryOptions());
#pragma warning disable CA2000 // The HttpClient owns and disposes the handler chain.
        var handler = new ResilienceHandler(builder.Build())
        {
            InnerHandler = new SocketsHttpHandler
            {
                PooledConnectionLifetime = TimeSpan.FromMinutes(5),
                AutomaticDecompression = DecompressionMethods.All,
            },
        };
#pragma warning restore CA2000
        return new HttpClient(handler, disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
    }
}
