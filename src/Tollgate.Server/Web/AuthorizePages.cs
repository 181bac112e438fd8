using Microsoft.AspNetCore.Http;
using Tollgate.Server.Admin;
using Tollgate.Server.Protocol;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Web;

/// <summary>
/// <c>GET /ap/oa</c>, the authorization endpoint (RFC 6749 §4.1.1), and <c>POST /ap/oa</c>, the consent
/// decision. Codes are minted by <see cref="AuthorizationCodes.IssueAsync"/>, the same path the CLI uses.
/// </summary>
internal sealed class AuthorizePages(WebSessions sessions, ProfileCache profiles, ITokenStore store, TimeProvider time, TollgateOptions options)
{
    public async Task ShowAsync(HttpContext http)
    {
        var ct = http.RequestAborted;
        var request = await sessions.OpenAsync(http);

        // 1. A valid request (else a 400 page, or an error at the application's registered return URL).
        var query = http.Request.Query;
        var (authorization, refusal) = await AuthorizationRequestReader.ReadAsync(name => query[name], profiles, ct);
        if (refusal is not null)
        {
            await RefuseAsync(request, refusal, afterPost: false);
            return;
        }

        // 2. A signed-in person (sign-in brings them back here with the same parameters).
        if (request.User is not { } user)
        {
            Layout.Redirect(http, "/signin?return=" + Uri.EscapeDataString(authorization!.PathAndQuery), afterPost: false);
            return;
        }

        // 3. Consent already given for every scope asked: no question, straight back with a code.
        string? remembered = await store.FindConsentAsync(user.RowId, authorization!.Profile.RowId, ct);
        if (remembered is not null && Scope.TryParse(remembered, out var consented, out _)
            && !authorization.Scope.Outside(consented.Tokens.Contains).Any())
        {
            await IssueCodeAsync(request, user, authorization, afterPost: false);
            return;
        }

        // 4. Ask.
        await Layout.WriteAsync(http, StatusCodes.Status200OK, ConsentPage(request, user, authorization, remembered));
    }

    public async Task DecideAsync(HttpContext http)
    {
        var ct = http.RequestAborted;
        var request = await sessions.OpenAsync(http);

        // 1. The form came from our consent page, for this signed-in person (anti-forgery).
        if (!await request.IsFormGenuineAsync())
        {
            await SignInPages.FormNotVerifiedAsync(request);
            return;
        }

        // 2. The same checks as the GET, on the form's copy of the request: a tampered form gains nothing.
        var form = await http.Request.ReadFormAsync(ct);
        var (authorization, refusal) = await AuthorizationRequestReader.ReadAsync(name => form[name], profiles, ct);
        if (refusal is not null)
        {
            await RefuseAsync(request, refusal, afterPost: true);
            return;
        }

        // 3. Still signed in.
        if (request.User is not { } user)
        {
            Layout.Redirect(http, "/signin?return=" + Uri.EscapeDataString(authorization!.PathAndQuery), afterPost: true);
            return;
        }

        // 4. The decision.
        switch ((string?)form["decision"])
        {
            case "allow":
                await store.SaveConsentAsync(user.RowId, authorization!.Profile.RowId, [.. authorization.Scope.Tokens], time.GetUtcNow(), ct);
                await IssueCodeAsync(request, user, authorization, afterPost: true);
                break;
            case "deny":
                Layout.Redirect(http, authorization!.RedirectWith(
                    ("error", "access_denied"), ("error_description", "The user denied the request.")), afterPost: true);
                break;
            default:
                await Layout.ProblemAsync(request, StatusCodes.Status400BadRequest, "Choose Allow or Deny",
                    Markup.Html($"<p>The form did not say whether you allow or deny access. Go back and choose one.</p>"));
                break;
        }
    }

    private async Task IssueCodeAsync(WebRequest request, User user, AuthorizationRequest authorization, bool afterPost)
    {
        var issued = await AuthorizationCodes.IssueAsync(store, new CodeRequest(
            authorization.Profile.ClientId, authorization.RedirectUri, user.Email, authorization.Scope.Value,
            authorization.CodeChallenge, authorization.CodeChallengeMethod), time, options, request.Http.RequestAborted);
        if (issued.Problem is not null)
        {
            // Only a change racing this request (the profile deleted, the URL removed) gets here.
            await Layout.ProblemAsync(request, StatusCodes.Status400BadRequest, "This application cannot be authorized now",
                Markup.Html($"<p>{issued.Problem}. Go back to the application and try again.</p>"));
            return;
        }
        Layout.Redirect(request.Http, authorization.RedirectWith(("code", issued.Value), ("scope", authorization.Scope.Value)), afterPost);
    }

    private static Task RefuseAsync(WebRequest request, AuthorizationRefusal refusal, bool afterPost)
    {
        if (refusal.RedirectTo is { } location)
        {
            Layout.Redirect(request.Http, location, afterPost);
            return Task.CompletedTask;
        }
        return Layout.ProblemAsync(request, StatusCodes.Status400BadRequest, refusal.PageTitle!, Markup.Html($"<p>{refusal.PageText}</p>"));
    }

    private static Markup ConsentPage(WebRequest request, User user, AuthorizationRequest authorization, string? remembered)
    {
        var app = authorization.Profile.Name;
        var fields = authorization.Parameters().Select(p => Markup.Html($"""<input type="hidden" name="{p.Key}" value="{p.Value}">"""));
        return Layout.Page(request, $"Allow {app}?", Markup.Html($"""
            <h1>{app} would like to use your account</h1>
            <div class="card">
            <p>You are signed in as <strong>{user.Name}</strong> ({user.Email}).</p>
            <p>If you allow it, <strong>{app}</strong> will be able to see:</p>
            {ScopeText.List(authorization.Scope.Tokens)}
            {Markup.When(remembered is not null, Markup.Html($"""<p class="muted">You allowed some of this before; the application now asks for more.</p>"""))}
            <p class="muted">Either way you will return to <span class="mono">{ScopeText.Destination(authorization.RedirectUri)}</span>.
            You can remove this access at any time on <a href="/apps">Your apps</a>.</p>
            {Layout.DecisionForm(request, "/ap/oa", Markup.Join(fields))}
            </div>
            """), narrow: true);
    }
}
