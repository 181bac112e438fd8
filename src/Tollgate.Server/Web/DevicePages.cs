using Microsoft.AspNetCore.Http;
using Tollgate.Server.Crypto;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Web;

/// <summary>
/// <c>/device</c>: where a signed-in person types the user code a device shows (the verification_uri of
/// the codepair response), sees which application asks for what, and allows or denies it.
/// </summary>
internal sealed class DevicePages(WebSessions sessions, ITokenStore store, TimeProvider time, TollgateOptions options)
{
    /// <summary>Wrong codes a person may type per throttle window, so a signed-in account cannot be used to guess codes.</summary>
    private const int MaxWrongCodes = 10;

    public async Task ShowAsync(HttpContext http)
    {
        var request = await sessions.OpenAsync(http);
        if (request.User is null)
        {
            Layout.Redirect(http, "/signin?return=%2Fdevice", afterPost: false);
            return;
        }
        await Layout.WriteAsync(http, StatusCodes.Status200OK, CodeForm(request, "", problem: null));
    }

    public async Task EnterCodeAsync(HttpContext http)
    {
        var ct = http.RequestAborted;
        // 1. Our form, from a signed-in person.
        if (await SignedInFormAsync(http) is not { } request)
        {
            return;
        }
        var user = request.User!;
        var form = await http.Request.ReadFormAsync(ct);
        string typed = (string?)form["user_code"] ?? "";

        // 2. Not guessing.
        string throttleKey = "device:" + user.UserId;
        var failures = await store.GetSignInFailuresAsync(throttleKey, time.GetUtcNow() - options.SignInThrottleWindow, ct);
        if (failures.Count >= MaxWrongCodes)
        {
            await Layout.WriteAsync(http, StatusCodes.Status429TooManyRequests, CodeForm(request, typed,
                "Too many wrong codes. Wait a few minutes, then enter the code your device shows now."));
            return;
        }

        // 3. A code waiting for a decision.
        string? code = Secrets.NormalizeUserCode(typed);
        var pending = code is null ? null : await store.FindPendingDeviceCodeAsync(code, time.GetUtcNow(), ct);
        if (pending is null)
        {
            await store.RecordSignInFailureAsync(throttleKey, time.GetUtcNow(), options.SignInThrottleWindow, ct);
            await Layout.WriteAsync(http, StatusCodes.Status400BadRequest, CodeForm(request, typed,
                "That code is not valid, or it has expired. Check the code your device shows (it has 8 letters) and try again."));
            return;
        }

        // 4. Ask.
        var profile = await store.FindProfileSummaryAsync(pending.ClientId, ct);
        await Layout.WriteAsync(http, StatusCodes.Status200OK, ConsentPage(request, code!, profile?.Name ?? pending.ClientId, pending.Scope));
    }

    public async Task DecideAsync(HttpContext http)
    {
        var ct = http.RequestAborted;
        if (await SignedInFormAsync(http) is not { } request)
        {
            return;
        }
        var user = request.User!;
        var form = await http.Request.ReadFormAsync(ct);
        string? decision = form["decision"];
        var code = Secrets.NormalizeUserCode(form["user_code"]);
        var pending = code is null ? null : await store.FindPendingDeviceCodeAsync(code, time.GetUtcNow(), ct);
        if (pending is null || decision is not ("allow" or "deny"))
        {
            await Layout.WriteAsync(http, StatusCodes.Status400BadRequest, CodeForm(request, code ?? "",
                "That code has expired or was already used. Enter the code your device shows now."));
            return;
        }
        bool approved = decision == "allow";
        if (!await store.DecideDeviceCodeAsync(code!, user.RowId, approved, time.GetUtcNow(), ct))
        {
            await Layout.WriteAsync(http, StatusCodes.Status400BadRequest, CodeForm(request, code!, "That code has expired or was already used."));
            return;
        }
        if (approved)
        {
            await store.SaveConsentAsync(user.RowId, pending.ProfileRowId, pending.Scope.Split(' '), time.GetUtcNow(), ct);
        }
        var name = (await store.FindProfileSummaryAsync(pending.ClientId, ct))?.Name ?? pending.ClientId;
        await Layout.WriteAsync(http, StatusCodes.Status200OK, Layout.Page(request, approved ? "Device connected" : "Request denied", Markup.Html($"""
            <h1>{(approved ? "Device connected" : "Request denied")}</h1>
            <div class="{(approved ? "notice" : "card")}" role="status">
            <p>{(approved ? $"{name} can now use your account. Go back to your device; it will continue by itself in a few seconds." : $"{name} was not given access. You can close this page.")}</p>
            </div>
            <p><a href="/apps">See your apps</a></p>
            """), narrow: true));
    }

    private async Task<WebRequest?> SignedInFormAsync(HttpContext http)
    {
        var request = await sessions.OpenAsync(http);
        if (!await request.IsFormGenuineAsync())
        {
            await SignInPages.FormNotVerifiedAsync(request);
            return null;
        }
        if (request.User is null)
        {
            Layout.Redirect(http, "/signin?return=%2Fdevice", afterPost: true);
            return null;
        }
        return request;
    }

    private static Markup CodeForm(WebRequest request, string typed, string? problem) => Layout.Page(request, "Connect a device", Markup.Html($"""
        <h1>Connect a device</h1>
        {Markup.When(problem is not null, Markup.Html($"""<div class="alert" role="alert" id="code-problem">{problem}</div>"""))}
        <form method="post" action="/device" class="card">
        {request.CsrfField()}
        <label for="user_code">Code shown on your device <span class="hint">8 letters, for example BCDF-GHJK</span></label>
        <input id="user_code" name="user_code" type="text" class="code" required maxlength="32" autocomplete="off" autocapitalize="characters" spellcheck="false" value="{typed}"{Markup.When(problem is not null, Markup.Html($""" aria-describedby="code-problem" """))}>
        <div class="actions"><button type="submit">Continue</button></div>
        </form>
        """), narrow: true);

    private static Markup ConsentPage(WebRequest request, string userCode, string app, string scope) => Layout.Page(request, $"Allow {app}?", Markup.Html($"""
        <h1>{app} would like to use your account on a device</h1>
        <div class="card">
        <p>Code <strong class="mono">{userCode[..4]}-{userCode[4..]}</strong>. Only continue if this is the code your own device shows.</p>
        <p>If you allow it, <strong>{app}</strong> will be able to see:</p>
        {ScopeText.List(scope.Split(' ', StringSplitOptions.RemoveEmptyEntries))}
        {Layout.DecisionForm(request, "/device/decide", Markup.Html($"""<input type="hidden" name="user_code" value="{userCode}">"""))}
        </div>
        """), narrow: true);
}
