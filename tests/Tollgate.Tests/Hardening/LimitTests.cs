using System.Net;
using System.Text;
using System.Text.Json;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Hardening;

/// <summary>Size limits and slow clients: every refusal is the protocol's JSON error, never a 500 or a silent drop.</summary>
public sealed class LimitTests
{
    [Fact]
    public async Task Too_many_header_bytes_is_431_with_the_protocol_error()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite, o => o.Limits.MaxRequestHeaderBytes = 4096);

        var reply = await host.GetAsync("/auth/o2/tokeninfo?access_token=x", h => h.Add("X-Padding", new string('a', 5000)));

        reply.AssertError(HttpStatusCode.RequestHeaderFieldsTooLarge, "invalid_request");
    }

    [Fact]
    public async Task A_multipart_body_without_its_boundary_is_400_on_every_post_route()
    {
        // Found by FuzzTests: ASP.NET Core's form reader throws on such a body, and every page that reads a form
        // answered 500.
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite);
        string[] routes = ["/auth/o2/token", "/auth/o2/create/codepair", "/ap/oa", "/signin", "/signout", "/device", "/device/decide",
            "/apps/remove", "/console/profiles"];

        foreach (string route in routes)
        {
            using var content = new StringContent("short=1");
            content.Headers.ContentType = System.Net.Http.Headers.MediaTypeHeaderValue.Parse("multipart/form-data; boundary=x");
            using var response = await host.Http.PostAsync(route, content);
            (await TokenReply.ReadAsync(response)).AssertError(HttpStatusCode.BadRequest, "invalid_request");
        }
    }

    [Fact]
    public async Task Too_many_headers_is_431_with_the_protocol_error()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite, o => o.Limits.MaxRequestHeaderCount = 16);

        var reply = await host.GetAsync("/auth/o2/tokeninfo?access_token=x", h =>
        {
            for (int i = 0; i < 20; i++)
            {
                h.Add($"X-H{i}", "v");
            }
        });

        reply.AssertError(HttpStatusCode.RequestHeaderFieldsTooLarge, "invalid_request");
    }

    [Fact]
    public async Task A_long_query_string_is_414_with_the_protocol_error()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite);

        var reply = await host.GetAsync("/auth/o2/tokeninfo?access_token=" + new string('A', 5000));

        reply.AssertError(HttpStatusCode.RequestUriTooLong, "invalid_request");
    }

    [Fact]
    public async Task Far_beyond_the_limits_Kestrel_answers_with_a_bare_4xx_and_the_server_keeps_serving()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite);

        var reply = await host.GetAsync("/auth/o2/tokeninfo?access_token=" + new string('A', 20_000));

        Assert.InRange((int)reply.Status, 400, 499);
        Assert.Equal(HttpStatusCode.OK, (await host.GetAsync("/healthz")).Status);
    }

    [Theory]
    [InlineData("/ap/oa")]
    [InlineData("/signin")]
    [InlineData("/apps/remove")]
    [InlineData("/console/profiles")]
    [InlineData("/device")]
    [InlineData("/auth/o2/create/codepair")]
    public async Task A_body_over_the_limit_posted_to_any_form_route_is_refused_with_413_not_a_server_error(string path)
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite);
        string before = host.Snapshot();
        // The web pages' forms are read by antiforgery before the page runs, and it wraps Kestrel's refusal in its own exception.
        using var request = new HttpRequestMessage(HttpMethod.Post, path)
        {
            // 100 KB: over the pages' 64 KB and the code-pair endpoint's 16 KB, under Kestrel's own 32 MB.
            Content = new StringContent("code=x&" + new string('A', 100_000), Encoding.UTF8, "application/x-www-form-urlencoded"),
        };

        var reply = await TokenReply.ReadAsync(await host.Http.SendAsync(request));

        reply.AssertError(HttpStatusCode.RequestEntityTooLarge, "invalid_request");
        Assert.Equal(before, host.Snapshot());
        Assert.Equal(HttpStatusCode.OK, (await host.GetAsync("/healthz")).Status);
    }

    [Fact]
    public async Task A_body_whose_end_cannot_be_known_is_refused_with_400_before_it_is_read_and_the_server_keeps_serving()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite);
        string before = host.Snapshot();
        // chunked is not the last transfer coding, so nothing delimits the body (RFC 9112 §6.3). Waiting for it would
        // let a client hold the connection, and guessing its end is how request smuggling starts: refuse at once, close.
        string head = "POST /auth/o2/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            + "Transfer-Encoding: chunked\r\nTransfer-Encoding: close\r\n\r\n";
        var started = System.Diagnostics.Stopwatch.StartNew();

        string response = await RawHttp.SendAsync(host.BaseAddress, head, Enumerable.Repeat(new string('A', 1000), 40),
            TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(15));

        Assert.StartsWith("HTTP/1.1 400", response, StringComparison.Ordinal);
        Assert.Contains("Connection: close", response, StringComparison.OrdinalIgnoreCase);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"answered after {started.Elapsed}, as if it had read the 10 s body");
        Assert.Equal(before, host.Snapshot());
        Assert.Equal(HttpStatusCode.OK, (await host.GetAsync("/healthz")).Status);
    }

    [Fact]
    public async Task A_body_that_trickles_in_is_refused_with_408_and_the_protocol_error()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite, o =>
        {
            o.Limits.MinRequestBodyBytesPerSecond = 100;
            o.Limits.RequestBodyGraceSeconds = 2;
        });
        string head = "POST /auth/o2/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=";

        string response = await RawHttp.SendAsync(host.BaseAddress, head, Enumerable.Repeat("a", 40), TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(15));

        Assert.StartsWith("HTTP/1.1 408", response, StringComparison.Ordinal);
        using var json = JsonDocument.Parse(RawHttp.Body(response));
        Assert.Equal("invalid_request", json.RootElement.GetProperty("error").GetString());
        Assert.True(Guid.TryParse(json.RootElement.GetProperty("request_id").GetString(), out _));
    }

    [Fact]
    public async Task Headers_that_trickle_in_are_cut_off_with_408_after_the_headers_timeout()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite, o => o.Limits.RequestHeadersTimeoutSeconds = 1);
        var started = System.Diagnostics.Stopwatch.StartNew();

        string response = await RawHttp.SendAsync(host.BaseAddress, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n",
            Enumerable.Repeat("X-Slow: 1\r\n", 40), TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(15));

        Assert.StartsWith("HTTP/1.1 408", response, StringComparison.Ordinal);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(8), $"took {started.Elapsed}");
    }
}
