using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Tollgate.Server.Protocol;

namespace Tollgate.Server.Hardening;

/// <summary>
/// Size limits and slow-client timeouts. Kestrel refuses what breaks its limits before any of our code runs, with a
/// bare status and no body; so Kestrel's limits are set to twice ours, and this middleware refuses at ours with
/// the protocol's JSON error. A request between the two limits gets JSON; one beyond both gets Kestrel's bare
/// 414/431/400 (never a 500, never a silently dropped connection).
/// </summary>
internal static class RequestLimits
{
    public static void ConfigureKestrel(KestrelServerOptions kestrel, LimitOptions limits)
    {
        kestrel.AddServerHeader = false;
        var k = kestrel.Limits;
        k.MaxRequestHeadersTotalSize = 2 * limits.MaxRequestHeaderBytes;
        k.MaxRequestHeaderCount = 2 * limits.MaxRequestHeaderCount;
        k.MaxRequestLineSize = 2 * limits.MaxRequestTargetBytes + 64;
        k.MaxRequestBodySize = limits.MaxRequestBodyBytes;
        // Slowloris: the headers must arrive within this time, or Kestrel answers 408 and closes.
        k.RequestHeadersTimeout = TimeSpan.FromSeconds(limits.RequestHeadersTimeoutSeconds);
        // Slow POST: a body trickling in below this rate (after the grace period) fails the read with 408.
        k.MinRequestBodyDataRate = limits.MinRequestBodyBytesPerSecond == 0
            ? null
            : new MinDataRate(limits.MinRequestBodyBytesPerSecond, TimeSpan.FromSeconds(limits.RequestBodyGraceSeconds));
        k.KeepAliveTimeout = TimeSpan.FromSeconds(limits.KeepAliveTimeoutSeconds);
        k.MaxConcurrentConnections = limits.MaxConcurrentConnections == 0 ? null : limits.MaxConcurrentConnections;
        k.MaxConcurrentUpgradedConnections = 0;
        k.Http2.MaxRequestHeaderFieldSize = 2 * limits.MaxRequestHeaderBytes;
    }

    /// <summary>The refusal for a request over our limits or of a type nothing here reads, or null. Cheap: lengths only, nothing is copied.</summary>
    public static OAuthError? Check(HttpRequest request, LimitOptions limits)
    {
        // No endpoint takes multipart (there are no uploads), and ASP.NET Core's form reader throws an IOException on a
        // multipart body without its boundary, which reached the client as a 500 (found by FuzzTests). Refused here,
        // before any endpoint or antiforgery reads the body.
        if (request.ContentType is { } type && type.StartsWith("multipart/", StringComparison.OrdinalIgnoreCase))
        {
            return OAuthError.InvalidRequest("The Content-Type multipart is not supported; send application/x-www-form-urlencoded.");
        }
        int target = (request.Path.Value?.Length ?? 0) + (request.QueryString.Value?.Length ?? 0);
        if (target > limits.MaxRequestTargetBytes)
        {
            return new OAuthError("invalid_request",
                $"The request target is longer than {limits.MaxRequestTargetBytes} bytes; send parameters in a POST body.", StatusCodes.Status414UriTooLong);
        }
        var headers = request.Headers;
        if (headers.Count > limits.MaxRequestHeaderCount)
        {
            return new OAuthError("invalid_request",
                $"The request has more than {limits.MaxRequestHeaderCount} headers.", StatusCodes.Status431RequestHeaderFieldsTooLarge);
        }
        long bytes = 0;
        foreach (var (name, values) in headers)
        {
            bytes += name.Length;
            foreach (var value in values)
            {
                bytes += value?.Length ?? 0;
            }
        }
        return bytes > limits.MaxRequestHeaderBytes
            ? new OAuthError("invalid_request",
                $"The request headers are larger than {limits.MaxRequestHeaderBytes} bytes.", StatusCodes.Status431RequestHeaderFieldsTooLarge)
            : null;
    }

    /// <summary>What Kestrel reports by throwing while the body is read (too slow, too large, malformed chunking), as the protocol's error.</summary>
    public static OAuthError FromBadRequest(Microsoft.AspNetCore.Http.BadHttpRequestException e) => e.StatusCode switch
    {
        StatusCodes.Status408RequestTimeout => new OAuthError("invalid_request",
            "The request body arrived too slowly; send it at once.", StatusCodes.Status408RequestTimeout),
        StatusCodes.Status413PayloadTooLarge => new OAuthError("invalid_request",
            "The request body is too large.", StatusCodes.Status413PayloadTooLarge),
        _ => new OAuthError("invalid_request", "The request is malformed at the HTTP level.", e.StatusCode is >= 400 and < 500 ? e.StatusCode : 400),
    };
}
