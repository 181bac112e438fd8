using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests;

/// <summary>Form and JSON bodies, Basic and body credentials, and bad input that must be refused without changing anything.</summary>
public sealed class RequestFormatTests
{
    private const string Scope = "videocentral::reporting";

    [Theory, Stores]
    public async Task A_JSON_body_is_accepted_like_a_form(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string code = await host.IssueCodeAsync(profile, user);

        var reply = await host.PostRawAsync(
            $$"""{"grant_type":"authorization_code","code":"{{code}}","redirect_uri":"{{TollgateHost.ReturnUrl}}","client_id":"{{profile.ClientId}}","client_secret":"{{profile.ClientSecret}}","unknown":{"nested":[1,2]},"z":1}""",
            "application/json");

        Assert.Equal(HttpStatusCode.OK, reply.Status);
        Assert.StartsWith("Atza|", reply.AccessToken, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task Basic_credentials_are_form_urlencoded_before_base64(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        // An imported secret with characters that RFC 6749 §2.3.1 says must be encoded inside Basic.
        var profile = await host.CreateProfileAsync(scopes: [Scope], clientId: "my:client&id+x", clientSecret: "s3cr3t:with+plus&amp/and=more-characters-here");
        string pair = $"{Uri.EscapeDataString(profile.ClientId)}:{Uri.EscapeDataString(profile.ClientSecret!)}";
        var basic = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(pair)));

        var reply = await host.PostTokenAsync([("grant_type", "client_credentials"), ("scope", Scope)], basic);

        Assert.Equal(HttpStatusCode.OK, reply.Status);
        Assert.Equal(Scope, reply["scope"]);
    }

    [Theory]
    [Stores("application/x-www-form-urlencoded; charset=UTF-8")]
    [Stores("Application/X-WWW-Form-Urlencoded")]
    public async Task Form_content_types_are_matched_without_regard_to_case_or_a_utf8_charset(StoreKind store, string contentType)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(scopes: [Scope]);

        var reply = await host.PostRawAsync(
            $"grant_type=client_credentials&scope={Scope}&client_id={profile.ClientId}&client_secret={profile.ClientSecret}", contentType);

        Assert.Equal(HttpStatusCode.OK, reply.Status);
    }

    [Theory]
    [Stores("text/plain", "grant_type=client_credentials")]
    [Stores("multipart/form-data; boundary=x", "--x\r\n")]
    [Stores("application/xml", "<grant_type/>")]
    [Stores("application/x-www-form-urlencoded; charset=ISO-8859-1", "grant_type=client_credentials")]
    [Stores("not a media type", "grant_type=client_credentials")]
    [Stores(null, "grant_type=client_credentials")]
    public async Task Unsupported_content_types_are_invalid_request(StoreKind store, string? contentType, string body)
    {
        await using var host = await TollgateHost.StartAsync(store);

        var reply = await host.PostRawAsync(body, contentType);

        reply.AssertError(HttpStatusCode.BadRequest, "invalid_request");
        Assert.True(reply.Description!.Contains("Content-Type", StringComparison.Ordinal) || reply.Description.Contains("charset", StringComparison.Ordinal),
            reply.Description);
    }

    [Theory]
    [Stores("grant_type=client_credentials&grant_type=refresh_token", "grant_type")]
    [Stores("grant_type=client_credentials&scope=a&scope=b", "scope")]
    [Stores("grant_type=client_credentials&client_id=a&client%5Fid=b", "client_id")]
    public async Task A_repeated_parameter_is_invalid_request_and_named(StoreKind store, string body, string parameter)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(scopes: [Scope]);
        string before = host.Snapshot();

        var reply = await host.PostRawAsync($"{body}&client_secret={profile.ClientSecret}", "application/x-www-form-urlencoded");

        reply.AssertError(HttpStatusCode.BadRequest, "invalid_request");
        Assert.Contains(parameter, reply.Description, StringComparison.Ordinal);
        Assert.Equal(before, host.Snapshot());
    }

    [Theory, Stores]
    public async Task A_repeated_JSON_member_is_invalid_request(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);

        var reply = await host.PostRawAsync("""{"grant_type":"client_credentials","grant_type":"refresh_token"}""", "application/json");

        reply.AssertError(HttpStatusCode.BadRequest, "invalid_request");
        Assert.Contains("grant_type", reply.Description, StringComparison.Ordinal);
    }

    [Theory]
    [Stores("""[1,2]""")]
    [Stores("""{"grant_type":1}""")]
    [Stores("""{"grant_type":"client_credentials" """)]
    [Stores("""{"grant_type":"x"} {}""")]
    [Stores("""{"grant_type":{"a":"b"}}""")]
    public async Task Malformed_JSON_is_invalid_request(StoreKind store, string body)
    {
        await using var host = await TollgateHost.StartAsync(store);

        var reply = await host.PostRawAsync(body, "application/json");

        reply.AssertError(HttpStatusCode.BadRequest, "invalid_request");
    }

    [Theory, Stores]
    public async Task Invalid_UTF8_in_a_form_value_is_invalid_request(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);

        var encoded = await host.PostRawAsync("grant_type=client_credentials&scope=%C3%28", "application/x-www-form-urlencoded");
        byte[] raw = [.. "grant_type=client_credentials&scope="u8, 0xFF, 0xFE];
        var rawBytes = await host.PostBytesAsync(raw, "application/x-www-form-urlencoded");
        byte[] json = [.. "{\"grant_type\":\"client_credentials\",\"scope\":\""u8, 0xC3, 0x28, .. "\"}"u8];
        var jsonBytes = await host.PostBytesAsync(json, "application/json");

        encoded.AssertError(HttpStatusCode.BadRequest, "invalid_request");
        Assert.Contains("UTF-8", encoded.Description, StringComparison.Ordinal);
        rawBytes.AssertError(HttpStatusCode.BadRequest, "invalid_request");
        jsonBytes.AssertError(HttpStatusCode.BadRequest, "invalid_request");
    }

    [Theory]
    [Stores("grant_type=client_credentials&scope=%ZZ")]
    [Stores("grant_type=client_credentials&scope=%4")]
    [Stores("grant_type=%")]
    public async Task Malformed_percent_encoding_is_invalid_request(StoreKind store, string body)
    {
        await using var host = await TollgateHost.StartAsync(store);

        var reply = await host.PostRawAsync(body, "application/x-www-form-urlencoded");

        reply.AssertError(HttpStatusCode.BadRequest, "invalid_request");
        Assert.Contains("percent-encoding", reply.Description, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task A_ten_megabyte_body_is_refused_with_413_and_changes_nothing(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(scopes: [Scope]);
        string before = host.Snapshot();
        var body = new byte[10 * 1024 * 1024];
        Array.Fill(body, (byte)'a');

        var reply = await host.PostBytesAsync(body, "application/x-www-form-urlencoded");

        reply.AssertError(HttpStatusCode.RequestEntityTooLarge, "invalid_request");
        Assert.Equal(before, host.Snapshot());
        var after = await host.PostTokenAsync(TollgateHost.WithClient(profile, ("grant_type", "client_credentials"), ("scope", Scope)));
        Assert.Equal(HttpStatusCode.OK, after.Status);
    }

    [Theory, Stores]
    public async Task An_oversized_chunked_body_without_a_length_is_refused_too(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/auth/o2/token")
        {
            Content = new StreamContent(new MemoryStream(new byte[64 * 1024])),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/x-www-form-urlencoded");
        request.Headers.TransferEncodingChunked = true;

        using var response = await host.Http.SendAsync(request);
        var reply = await TokenReply.ReadAsync(response);

        reply.AssertError(HttpStatusCode.RequestEntityTooLarge, "invalid_request");
    }

    [Theory, Stores]
    public async Task Unknown_parameters_are_ignored_and_empty_ones_count_as_omitted(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(scopes: [Scope]);

        var ok = await host.PostRawAsync(
            $"foo=bar&&=x&grant_type=client_credentials&scope={Scope}&client_id={profile.ClientId}&client_secret={profile.ClientSecret}&x",
            "application/x-www-form-urlencoded");
        var empty = await host.PostRawAsync($"grant_type=&client_id={profile.ClientId}", "application/x-www-form-urlencoded");

        Assert.Equal(HttpStatusCode.OK, ok.Status);
        empty.AssertError(HttpStatusCode.BadRequest, "invalid_request");
        Assert.Contains("grant_type is missing", empty.Description, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task Random_and_hostile_bodies_never_get_a_5xx_and_change_nothing(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(scopes: [Scope]);
        var (authorized, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        string before = host.Snapshot();
        var random = new Random(20261129);
        string[] pieces =
        [
            "grant_type=", "refresh_token", "authorization_code", "client_credentials", "&", "=", "%", "%7C", "%00", "+",
            "code=", "client_id=", profile.ClientId, "client_secret=", "Atzr|", "scope=", "\u00e9", "{", "}", "\"", ":",
            "redirect_uri=", "code_verifier=", "\0", "\r\n", new string('x', 3000),
        ];
        string[] contentTypes = ["application/x-www-form-urlencoded", "application/json", "text/plain", ""];

        for (int i = 0; i < 300; i++)
        {
            var body = new StringBuilder();
            int parts = random.Next(1, 12);
            for (int p = 0; p < parts; p++)
            {
                body.Append(pieces[random.Next(pieces.Length)]);
            }
            byte[] bytes = Encoding.UTF8.GetBytes(body.ToString());
            if (random.Next(4) == 0)
            {
                bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
            }
            string contentType = contentTypes[random.Next(contentTypes.Length)];

            var reply = await host.PostBytesAsync(bytes, contentType.Length == 0 ? null : contentType);

            Assert.True((int)reply.Status is >= 400 and < 500, $"body {Convert.ToHexString(bytes)} got {(int)reply.Status}: {reply.Body}");
            reply.AssertError(reply.Status, reply.Error!);
        }
        Assert.Equal(before, host.Snapshot());
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(authorized, tokens.RefreshToken)).Status);
    }
}
