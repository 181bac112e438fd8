using Microsoft.AspNetCore.Http;
using Tollgate.Server.Crypto;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Endpoints;

/// <summary>
/// <c>POST /auth/o2/create/codepair</c>: Login with Amazon's device authorization request (RFC 8628 §3.1-3.2).
/// A device without a browser gets a <c>device_code</c> to poll the token endpoint with, and a
/// <c>user_code</c> for its person to enter at <c>verification_uri</c> on a phone or computer.
/// </summary>
internal sealed class CodePairEndpoint(ProfileCache profiles, ITokenStore store, TimeProvider time, TollgateOptions options)
{
    private static readonly string[] Parameters = ["response_type", "client_id", "scope"];

    public async Task HandleAsync(HttpContext http)
    {
        var ct = http.RequestAborted;

        // 1. A small form body, each parameter once. (Multipart never gets here: RequestLimits refuses it for every route.)
        if (!http.Request.HasFormContentType)
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.InvalidRequest("Send the request as application/x-www-form-urlencoded."));
            return;
        }
        if (http.Request.ContentLength > options.MaxTokenRequestBytes)
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.TooLarge(options.MaxTokenRequestBytes));
            return;
        }
        if (http.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = options.MaxTokenRequestBytes; // a chunked body cannot be larger either
        }
        var form = await http.Request.ReadFormAsync(ct);
        if (Parameters.FirstOrDefault(p => form[p].Count > 1) is { } repeated)
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.InvalidRequest($"The parameter {repeated} appears more than once."));
            return;
        }

        // 2. response_type=device_code.
        if ((string?)form["response_type"] != "device_code")
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.InvalidRequest("The parameter response_type must be device_code."));
            return;
        }

        // 3. A registered application.
        string? clientId = form["client_id"];
        if (string.IsNullOrEmpty(clientId))
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.InvalidRequest("The parameter client_id is missing."));
            return;
        }
        var profile = clientId.Length <= 256 ? await profiles.FindAsync(clientId, ct) : null;
        if (profile is null)
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.InvalidClient("Client authentication failed: no security profile has this client_id."));
            return;
        }

        // 4. Scopes a person can grant it: LWA's user scopes and the profile's own.
        if (!Scope.TryParse(form["scope"], out var scope, out var problem))
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.InvalidScope($"The parameter scope is required, e.g. scope=profile ({problem})."));
            return;
        }
        var unknown = scope.Outside(s => Scope.StandardUserScopes.Contains(s) || profile.RegisteredScopes.Contains(s)).ToList();
        if (unknown.Count > 0)
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.InvalidScope($"An unknown scope was requested: {string.Join(' ', unknown)}."));
            return;
        }

        // 5. The pair. A user code already in use (about one in 2^34 per live code) is drawn again.
        string deviceCode = Secrets.NewDeviceCode();
        var now = time.GetUtcNow();
        string? userCode = null;
        for (int attempt = 0; attempt < 5 && userCode is null; attempt++)
        {
            string candidate = Secrets.NewUserCode();
            if (await store.InsertDeviceCodeAsync(new NewDeviceCode(
                Secrets.Hash(deviceCode), candidate, profile.RowId, scope.Value, options.DeviceCodePollInterval, now, now + options.DeviceCodeLifetime), ct))
            {
                userCode = candidate;
            }
        }
        if (userCode is null)
        {
            await ProtocolResponse.WriteErrorAsync(http, OAuthError.TemporarilyUnavailable("No user code was free; retry."));
            return;
        }

        string verificationUri = (options.Issuer ?? $"{http.Request.Scheme}://{http.Request.Host}").TrimEnd('/') + "/device";
        await ProtocolResponse.WriteJsonAsync(http, StatusCodes.Status200OK, (deviceCode, userCode, verificationUri, options), static (json, s) =>
        {
            json.WriteString("device_code"u8, s.deviceCode);
            json.WriteString("user_code"u8, s.userCode);
            json.WriteString("verification_uri"u8, s.verificationUri);
            json.WriteNumber("expires_in"u8, s.options.DeviceCodeLifetimeSeconds);
            json.WriteNumber("interval"u8, s.options.DeviceCodePollIntervalSeconds);
        });
    }
}
