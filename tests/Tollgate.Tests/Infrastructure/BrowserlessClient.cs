using System.Net;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.WebUtilities;

namespace Tollgate.Tests.Infrastructure;

/// <summary>
/// A browser's HTTP behaviour without the browser: a cookie jar, forms with their hidden fields, and
/// redirects left for the test to inspect (and follow only when it says so). For security tests that
/// need to send what no browser would (a missing or forged token, a planted cookie).
/// </summary>
internal sealed partial class BrowserlessClient : IDisposable
{
    private readonly HttpClient _http;

    public BrowserlessClient(TollgateHost host)
    {
        Host = host;
        Cookies = new CookieContainer();
        _http = new HttpClient(new HttpClientHandler { CookieContainer = Cookies, AllowAutoRedirect = false }) { BaseAddress = host.BaseAddress };
    }

    public TollgateHost Host { get; }

    public CookieContainer Cookies { get; }

    public string? Cookie(string name) => Cookies.GetCookies(Host.BaseAddress)[name]?.Value;

    public void SetCookie(string name, string value) => Cookies.Add(Host.BaseAddress, new Cookie(name, value, "/"));

    public async Task<WebReply> GetAsync(string pathAndQuery)
    {
        using var response = await _http.GetAsync(pathAndQuery);
        return await WebReply.ReadAsync(response);
    }

    public async Task<WebReply> PostAsync(string path, params (string Name, string? Value)[] fields)
    {
        using var content = new FormUrlEncodedContent(fields.Where(f => f.Value is not null).Select(f => new KeyValuePair<string, string>(f.Name, f.Value!)));
        using var response = await _http.PostAsync(path, content);
        return await WebReply.ReadAsync(response);
    }

    /// <summary>Posts a form as a browser would: the fields of the page's form with that action, plus <paramref name="fields"/>.</summary>
    public Task<WebReply> SubmitAsync(WebReply page, string action, params (string Name, string? Value)[] fields)
    {
        var form = page.Form(action);
        foreach (var (name, value) in fields)
        {
            form[name] = value;
        }
        return PostAsync(action, [.. form.Select(kv => (kv.Key, kv.Value))]);
    }

    /// <summary>Follows redirects on this site; stops at the first one that leaves it.</summary>
    public async Task<WebReply> FollowAsync(WebReply reply)
    {
        for (int hops = 0; hops < 10 && reply.Location is { } location && location.StartsWith('/'); hops++)
        {
            reply = await GetAsync(location);
        }
        return reply;
    }

    public async Task<WebReply> SignInAsync(string email, string password = TollgateHost.Password, string? returnTo = null)
    {
        var page = await GetAsync("/signin" + (returnTo is null ? "" : "?return=" + Uri.EscapeDataString(returnTo)));
        return await SubmitAsync(page, "/signin", ("email", email), ("password", password));
    }

    public void Dispose() => _http.Dispose();
}

internal sealed partial record WebReply(HttpStatusCode Status, string Body, string? Location, HttpResponseMessage Headers)
{
    [GeneratedRegex("""<form[^>]*action="(?<action>[^"]*)"[^>]*>(?<body>.*?)</form>""", RegexOptions.Singleline)]
    private static partial Regex FormPattern();

    [GeneratedRegex("""<input[^>]*name="(?<name>[^"]*)"[^>]*>""")]
    private static partial Regex InputPattern();

    [GeneratedRegex("""value="(?<value>[^"]*)"|(?<checked>\schecked)""")]
    private static partial Regex ValuePattern();

    public static async Task<WebReply> ReadAsync(HttpResponseMessage response) => new(
        response.StatusCode, await response.Content.ReadAsStringAsync(), response.Headers.Location?.OriginalString, response);

    /// <summary>The named fields of the first form posting to <paramref name="action"/> (hidden ones included).</summary>
    public Dictionary<string, string?> Form(string action)
    {
        var form = FormPattern().Matches(Body).FirstOrDefault(m => WebUtility.HtmlDecode(m.Groups["action"].Value) == action)
            ?? throw new InvalidOperationException($"no form posts to {action} in:\n{Body}");
        var fields = new Dictionary<string, string?>();
        foreach (Match input in InputPattern().Matches(form.Groups["body"].Value))
        {
            if (input.Value.Contains("type=\"checkbox\"", StringComparison.Ordinal) && !input.Value.Contains(" checked", StringComparison.Ordinal))
            {
                continue;
            }
            var value = ValuePattern().Match(input.Value);
            fields[WebUtility.HtmlDecode(input.Groups["name"].Value)] = value.Success ? WebUtility.HtmlDecode(value.Groups["value"].Value) : "";
        }
        return fields;
    }

    public string CsrfToken => Form(FormPattern().Match(Body).Groups["action"].Value)["csrf_token"]!;

    /// <summary>The query of the redirect target, decoded.</summary>
    public Dictionary<string, string> LocationQuery()
    {
        var query = new Uri(new Uri("http://placeholder"), Location!).Query;
        return QueryHelpers.ParseQuery(query).ToDictionary(kv => kv.Key, kv => kv.Value.ToString());
    }

    public string? Header(string name) =>
        Headers.Headers.TryGetValues(name, out var values) ? string.Join(", ", values)
        : Headers.Content.Headers.TryGetValues(name, out var contentValues) ? string.Join(", ", contentValues) : null;

    public IEnumerable<string> SetCookies => Headers.Headers.TryGetValues("Set-Cookie", out var values) ? values : [];
}
