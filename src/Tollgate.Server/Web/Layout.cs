using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace Tollgate.Server.Web;

/// <summary>
/// The page shell and how a page is sent: one inline style sheet (no extra request, no CDN), and
/// headers that keep pages out of caches and frames and forbid scripts altogether.
/// </summary>
internal static class Layout
{
    // Plain and calm: system fonts, one accent colour with at least 4.5:1 contrast, large touch
    // targets, visible keyboard focus, a single column that reads well on a phone.
    private const string StyleSheet = """
        *{box-sizing:border-box}
        html{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;font-size:100%;line-height:1.5;color:#1d2733;background:#f4f5f7}
        body{margin:0}
        a{color:#1a56a0}
        a:focus-visible,button:focus-visible,input:focus-visible,textarea:focus-visible,summary:focus-visible{outline:3px solid #f2a900;outline-offset:2px}
        .top{background:#fff;border-bottom:1px solid #d8dce2}
        .top .bar{max-width:52rem;margin:0 auto;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center}
        .brand{font-weight:700;color:#1d2733;text-decoration:none;margin-right:auto}
        .top nav{display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:center}
        .top form{margin:0}
        main{max-width:52rem;margin:0 auto;padding:1.25rem 1rem 3rem;overflow-wrap:anywhere}
        main.narrow{max-width:28rem}
        h1{font-size:1.5rem;line-height:1.25;margin:.5rem 0 1rem}
        h2{font-size:1.15rem;margin:1.75rem 0 .5rem}
        .card{background:#fff;border:1px solid #d8dce2;border-radius:8px;padding:1.25rem;margin:0 0 1rem}
        label{display:block;font-weight:600;margin:.9rem 0 .3rem}
        .hint{display:block;font-weight:400;color:#4a5563;font-size:.9rem}
        input[type=email],input[type=password],input[type=text],input[type=url],input[type=number],textarea{width:100%;font:inherit;font-size:1rem;padding:.6rem .7rem;border:1px solid #7b8594;border-radius:6px;background:#fff;color:#1d2733;min-height:2.75rem}
        input.code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:1.4rem;letter-spacing:.15em;text-transform:uppercase}
        .check{display:flex;gap:.5rem;align-items:flex-start;font-weight:400}
        .check input{margin-top:.35rem;width:1.1rem;height:1.1rem}
        button{font:inherit;font-weight:600;min-height:2.75rem;padding:.55rem 1.1rem;border-radius:6px;border:1px solid #1a56a0;background:#1a56a0;color:#fff;cursor:pointer}
        button.secondary{background:#fff;color:#1a56a0}
        button.danger{background:#fff;color:#a4262c;border-color:#a4262c}
        button.link{background:none;border:none;color:#1a56a0;text-decoration:underline;padding:0;min-height:0;font-weight:400}
        .actions{display:flex;flex-wrap:wrap;gap:.75rem;margin-top:1.25rem}
        .alert{border-left:4px solid #a4262c;background:#fdf0f0;padding:.75rem 1rem;margin:0 0 1rem;border-radius:4px}
        .notice{border-left:4px solid #1a7f37;background:#eef8f0;padding:.75rem 1rem;margin:0 0 1rem;border-radius:4px}
        .scopes{padding-left:1.25rem}
        .scopes li{margin:.25rem 0}
        code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9rem;overflow-wrap:anywhere}
        .secret{display:block;background:#f4f5f7;border:1px dashed #7b8594;padding:.6rem;border-radius:6px;user-select:all}
        .table-wrap{overflow-x:auto}
        table{border-collapse:collapse;width:100%;font-size:.95rem}
        th,td{text-align:left;padding:.5rem .5rem;border-bottom:1px solid #e3e6ea;vertical-align:top}
        th{font-weight:600;color:#4a5563}
        dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}
        dt{font-weight:600;color:#4a5563}
        dd{margin:0;overflow-wrap:anywhere}
        .muted{color:#4a5563}
        .chart svg{width:100%;height:auto;display:block}
        .legend{display:flex;gap:1rem;font-size:.9rem;color:#4a5563}
        .swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.3rem;vertical-align:-1px}
        .sw-issued{background:#1a56a0}
        .sw-refused{background:#c4314b}
        @media (max-width:30rem){dl{grid-template-columns:1fr}dd{margin-bottom:.4rem}h1{font-size:1.3rem}}
        """;

    private static readonly string StyleHash = Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(StyleSheet)));

    /// <summary>
    /// No scripts at all, styles only from this page's own sheet, no framing (clickjacking on the consent page).
    /// No form-action: Chrome applies it to the redirect that follows a form, and the consent form's
    /// redirect goes to the application's return URL, on another origin.
    /// </summary>
    private static readonly string ContentSecurityPolicy =
        $"default-src 'none'; style-src 'sha256-{StyleHash}'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'";

    public static Markup Page(WebRequest request, string title, Markup body, bool narrow = false)
    {
        var user = request.User;
        var nav = user is null
            ? Markup.Html($"""<a href="/signin">Sign in</a>""")
            : Markup.Html($"""
                <a href="/apps">Your apps</a>
                {Markup.When(request.IsDeveloper, Markup.Html($"""<a href="/console">Developer console</a>"""))}
                <a href="/device">Enter a device code</a>
                <form method="post" action="/signout">{request.CsrfField()}<button type="submit" class="link">Sign out</button></form>
                """);
        return Markup.Html($"""
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="referrer" content="no-referrer">
            <title>{title} · Tollgate</title>
            <style>{Markup.Trusted(StyleSheet)}</style>
            </head>
            <body>
            <header class="top"><div class="bar"><a class="brand" href="/apps">Tollgate</a><nav aria-label="Main">{nav}</nav></div></header>
            <main id="main" class="{(narrow ? "narrow" : "")}">
            {body}
            </main>
            </body>
            </html>
            """);
    }

    /// <summary>
    /// The Allow / Deny form of both consent pages (web sign-in and device codes): one anti-forgery field, the page's
    /// own hidden fields, and two buttons whose <c>decision</c> values (<c>allow</c>, <c>deny</c>) both handlers read.
    /// </summary>
    public static Markup DecisionForm(WebRequest request, string action, Markup hiddenFields) => Markup.Html($"""
        <form method="post" action="{action}">
        {request.CsrfField()}
        {hiddenFields}
        <div class="actions">
        <button type="submit" name="decision" value="allow">Allow</button>
        <button type="submit" name="decision" value="deny" class="secondary">Deny</button>
        </div>
        </form>
        """);

    public static async Task WriteAsync(HttpContext http, int status, Markup page)
    {
        var response = http.Response;
        response.StatusCode = status;
        response.ContentType = "text/html; charset=utf-8";
        SecurityHeaders(response);
        await response.WriteAsync(page.Value, Encoding.UTF8, http.RequestAborted);
    }

    /// <summary>Pages hold personal data and one-time secrets: never cached, framed, sniffed or referred.</summary>
    public static void SecurityHeaders(HttpResponse response)
    {
        response.Headers.CacheControl = "no-store";
        response.Headers.Pragma = "no-cache";
        response.Headers.ContentSecurityPolicy = ContentSecurityPolicy;
        response.Headers.XFrameOptions = "DENY";
        response.Headers.XContentTypeOptions = "nosniff";
        response.Headers["Referrer-Policy"] = "no-referrer";
    }

    /// <summary>303 after a form (the browser then GETs), 302 otherwise; only ever to a URL we chose or a registered one.</summary>
    public static void Redirect(HttpContext http, string location, bool afterPost)
    {
        SecurityHeaders(http.Response);
        http.Response.StatusCode = afterPost ? StatusCodes.Status303SeeOther : StatusCodes.Status302Found;
        http.Response.Headers.Location = location;
    }

    /// <summary>A page that explains a problem in words, with nothing to click but a way back.</summary>
    public static Task ProblemAsync(WebRequest request, int status, string title, Markup explanation) =>
        WriteAsync(request.Http, status, Page(request, title, Markup.Html($"""
            <h1>{title}</h1>
            <div class="card" role="alert">{explanation}</div>
            <p><a href="/apps">Go to your apps</a></p>
            """), narrow: true));
}
