using System.Security.Claims;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Http;
using Tollgate.Server.Crypto;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Web;

/// <summary>One page request: who is signed in, and the anti-forgery token its forms carry.</summary>
internal sealed class WebRequest(HttpContext http, User? user, bool isDeveloper, IAntiforgery antiforgery)
{
    public const string CsrfFieldName = "csrf_token";

    private string? _csrfToken;

    public HttpContext Http { get; } = http;

    public User? User { get; } = user;

    public bool IsDeveloper { get; } = isDeveloper;

    /// <summary>The hidden field every form carries; the matching cookie is set with it.</summary>
    public Markup CsrfField()
    {
        _csrfToken ??= antiforgery.GetAndStoreTokens(Http).RequestToken!;
        return Markup.Html($"""<input type="hidden" name="{CsrfFieldName}" value="{_csrfToken}">""");
    }

    /// <summary>True when the posted form carries a token that matches this browser's cookie and this user.</summary>
    public Task<bool> IsFormGenuineAsync() => antiforgery.IsRequestValidAsync(Http);
}

/// <summary>
/// Web sessions. The cookie holds 256 random bits; the store holds only their SHA-256 with the user
/// and an absolute expiry. So a session survives a restart and works on every node (it is in the
/// shared store), a stolen database holds no usable session, sign-out ends the session everywhere,
/// and every sign-in starts a brand-new id (no session fixation: an id planted before sign-in is
/// discarded, never promoted).
/// </summary>
/// <remarks>
/// Cookie: HttpOnly (no script can read it), SameSite=Lax (sent on the top-level navigation that
/// brings a person from an application to <c>/ap/oa</c>, never on cross-site form posts), Secure and
/// <c>__Host-</c>-prefixed when the request came over HTTPS.
/// </remarks>
internal sealed class WebSessions(ITokenStore store, TimeProvider time, TollgateOptions options, IAntiforgery antiforgery)
{
    private const int MaxFormBytes = 64 * 1024;
    private const string PlainCookieName = "tollgate_session";
    private const string SecureCookieName = "__Host-tollgate_session";

    public static string CookieName(HttpRequest request) => request.IsHttps ? SecureCookieName : PlainCookieName;

    /// <summary>Reads the session cookie (if any) and makes its user the request's identity, for anti-forgery and pages.</summary>
    public async Task<WebRequest> OpenAsync(HttpContext http, bool checkDeveloper = true)
    {
        // Every form here is a few hundred bytes; refuse to buffer more (Kestrel would allow 30 MB).
        if (HttpMethods.IsPost(http.Request.Method)
            && http.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = MaxFormBytes;
        }
        var user = await CurrentUserAsync(http);
        bool developer = user is not null && checkDeveloper && await store.IsDeveloperAsync(user.RowId, http.RequestAborted);
        if (user is not null)
        {
            // Anti-forgery tokens are bound to this identity, so a token issued before sign-in is useless after it.
            http.User = new ClaimsPrincipal(new ClaimsIdentity(
                [new Claim(ClaimTypes.NameIdentifier, user.UserId), new Claim(ClaimTypes.Name, user.Name)], "tollgate-session"));
        }
        return new WebRequest(http, user, developer, antiforgery);
    }

    private async Task<User?> CurrentUserAsync(HttpContext http)
    {
        if (SessionHash(http.Request) is not { } hash)
        {
            return null;
        }
        return await store.FindWebSessionUserAsync(hash, time.GetUtcNow(), http.RequestAborted);
    }

    /// <summary>Ends any session this browser had, then starts a new one with a fresh id.</summary>
    public async Task SignInAsync(HttpContext http, User user)
    {
        if (SessionHash(http.Request) is { } old)
        {
            await store.DeleteWebSessionAsync(old, http.RequestAborted);
        }
        string id = Secrets.RandomUrlSafe(32);
        var now = time.GetUtcNow();
        await store.CreateWebSessionAsync(Secrets.Hash(id), user.RowId, now, now + options.SessionLifetime, http.RequestAborted);
        http.Response.Cookies.Append(CookieName(http.Request), id, CookieOptions(http.Request));
    }

    public async Task SignOutAsync(HttpContext http)
    {
        if (SessionHash(http.Request) is { } hash)
        {
            await store.DeleteWebSessionAsync(hash, http.RequestAborted);
        }
        http.Response.Cookies.Delete(CookieName(http.Request), CookieOptions(http.Request));
    }

    private static byte[]? SessionHash(HttpRequest request) =>
        request.Cookies[CookieName(request)] is { Length: > 0 and <= 128 } id ? Secrets.Hash(id) : null;

    /// <summary>A browser-session cookie: it ends when the browser closes, and the store ends it after SessionLifetime anyway.</summary>
    private static CookieOptions CookieOptions(HttpRequest request) => new()
    {
        HttpOnly = true,
        Secure = request.IsHttps,
        SameSite = SameSiteMode.Lax,
        Path = "/",
        IsEssential = true,
    };
}
