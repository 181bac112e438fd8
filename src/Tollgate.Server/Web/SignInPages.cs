using Microsoft.AspNetCore.Http;
using Tollgate.Server.Crypto;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Web;

/// <summary><c>/signin</c> and <c>/signout</c>: email and password, throttled, each sign-in a new session.</summary>
internal sealed class SignInPages(WebSessions sessions, SignInThrottle throttle, ITokenStore store)
{
    // Verifying against this when the email is unknown makes both answers take the same time,
    // so response timing does not tell which emails have accounts.
    private static readonly Lazy<string> DecoyHash = new(() => Passwords.Hash(Secrets.RandomUrlSafe(16)));

    public async Task ShowAsync(HttpContext http)
    {
        var request = await sessions.OpenAsync(http);
        string returnTo = LocalUrl.Sanitize(http.Request.Query["return"]);
        if (request.User is not null)
        {
            Layout.Redirect(http, returnTo, afterPost: false);
            return;
        }
        await Layout.WriteAsync(http, StatusCodes.Status200OK, Form(request, returnTo, email: "", problem: null));
    }

    public async Task SubmitAsync(HttpContext http)
    {
        var request = await sessions.OpenAsync(http);
        var ct = http.RequestAborted;

        // 1. The form is ours (anti-forgery), which also stops login CSRF.
        if (!await request.IsFormGenuineAsync())
        {
            await FormNotVerifiedAsync(request);
            return;
        }
        var form = await http.Request.ReadFormAsync(ct);
        string returnTo = LocalUrl.Sanitize(form["return"]);
        string email = ((string?)form["email"] ?? "").Trim();
        string password = (string?)form["password"] ?? "";

        // 2. Something to check.
        if (email.Length is 0 or > 254 || password.Length is 0 or > 1024)
        {
            await Layout.WriteAsync(http, StatusCodes.Status400BadRequest,
                Form(request, returnTo, email.Length > 254 ? "" : email, "Enter your email and your password."));
            return;
        }

        // 3. Not paused by too many failures (checked before the password, so guessing stops here).
        var address = http.Connection.RemoteIpAddress;
        if (await throttle.PausedForAsync(email, address, ct) is { } paused)
        {
            await TooManyAsync(request, returnTo, email, paused);
            return;
        }

        // 4. The password.
        var user = await store.FindUserByEmailAsync(email, ct);
        bool verified = Passwords.Verify(user?.PasswordHash ?? DecoyHash.Value, password) && user is not null;
        if (!verified)
        {
            await throttle.RecordFailureAsync(email, address, ct);
            if (await throttle.PausedForAsync(email, address, ct) is { } nowPaused)
            {
                await TooManyAsync(request, returnTo, email, nowPaused);
                return;
            }
            await Layout.WriteAsync(http, StatusCodes.Status401Unauthorized,
                Form(request, returnTo, email, "That email and password do not match an account. Check them and try again."));
            return;
        }

        // 5. A new session (never the one this browser had before), then back where the person was going.
        await throttle.RecordSuccessAsync(email, ct);
        await sessions.SignInAsync(http, user!);
        Layout.Redirect(http, returnTo, afterPost: true);
    }

    public async Task SignOutAsync(HttpContext http)
    {
        var request = await sessions.OpenAsync(http, checkDeveloper: false);
        if (!await request.IsFormGenuineAsync())
        {
            await FormNotVerifiedAsync(request);
            return;
        }
        await sessions.SignOutAsync(http);
        Layout.Redirect(http, "/signin", afterPost: true);
    }

    /// <summary>The same answer for a missing, forged or expired anti-forgery token.</summary>
    public static Task FormNotVerifiedAsync(WebRequest request) => Layout.ProblemAsync(request, StatusCodes.Status400BadRequest,
        "This form could not be verified",
        Markup.Html($"""
            <p>The form you sent did not come from this page, or it has expired (for example after you signed in or out in another tab).</p>
            <p>Nothing was changed. Go back, reload the page and try again.</p>
            """));

    private Task TooManyAsync(WebRequest request, string returnTo, string email, TimeSpan paused)
    {
        int minutes = Math.Max(1, (int)Math.Ceiling(paused.TotalMinutes));
        request.Http.Response.Headers.RetryAfter = ((int)Math.Ceiling(paused.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        return Layout.WriteAsync(request.Http, StatusCodes.Status429TooManyRequests, Form(request, returnTo, email,
            $"Too many failed sign-in attempts. To protect the account, sign-in is paused for about {minutes} minute{(minutes == 1 ? "" : "s")}. Try again later."));
    }

    private static Markup Form(WebRequest request, string returnTo, string email, string? problem) => Layout.Page(request, "Sign in", Markup.Html($"""
        <h1>Sign in</h1>
        {Markup.When(problem is not null, Markup.Html($"""<div class="alert" role="alert" id="problem">{problem}</div>"""))}
        <form method="post" action="/signin" class="card">
        {request.CsrfField()}
        <input type="hidden" name="return" value="{returnTo}">
        <label for="email">Email</label>
        <input id="email" name="email" type="email" autocomplete="username" required maxlength="254" value="{email}"{Markup.When(problem is not null, Markup.Html($""" aria-describedby="problem" """))}>
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
        <div class="actions"><button type="submit">Sign in</button></div>
        </form>
        """), narrow: true);
}
