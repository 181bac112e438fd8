using System.Net;
using System.Net.Http.Headers;

namespace Tollgate.Client;

/// <summary>
/// Attaches <c>Authorization: Bearer &lt;access token&gt;</c> from an <see cref="AccessTokenProvider"/> to each request.
/// When the server answers 401, the token is refreshed once and the request is sent once more; whatever that second
/// attempt answers is returned, so it never loops.
/// </summary>
/// <remarks>The request content is buffered before the first attempt so that it can be sent twice.</remarks>
public sealed class BearerTokenHandler : DelegatingHandler
{
    private readonly AccessTokenProvider _provider;

    /// <summary>Creates the handler.</summary>
    /// <param name="provider">Where access tokens come from.</param>
    public BearerTokenHandler(AccessTokenProvider provider)
    {
        ArgumentNullException.ThrowIfNull(provider);
        _provider = provider;
    }

    /// <inheritdoc />
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Content is not null)
            await request.Content.LoadIntoBufferAsync(cancellationToken);

        var token = await _provider.GetAccessTokenAsync(cancellationToken);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        var response = await base.SendAsync(request, cancellationToken);
        if (response.StatusCode != HttpStatusCode.Unauthorized)
            return response;

        var fresh = await _provider.RefreshAsync(token, cancellationToken);
        response.Dispose();
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", fresh);
        return await base.SendAsync(request, cancellationToken);
    }
}
