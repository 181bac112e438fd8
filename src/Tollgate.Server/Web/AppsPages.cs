using System.Globalization;
using Microsoft.AspNetCore.Http;
using Tollgate.Server.Admin;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Web;

/// <summary>"Your apps": which applications hold access to the signed-in person's account, and removing them.</summary>
internal sealed class AppsPages(WebSessions sessions, ITokenStore store, TimeProvider time)
{
    public async Task ShowAsync(HttpContext http)
    {
        var request = await sessions.OpenAsync(http);
        if (request.User is not { } user)
        {
            Layout.Redirect(http, "/signin?return=%2Fapps", afterPost: false);
            return;
        }
        string? removed = http.Request.Query["removed"];
        await Layout.WriteAsync(http, StatusCodes.Status200OK, await PageAsync(request, user, removed is null ? null : $"{removed} no longer has access to your account."));
    }

    public async Task RemoveAsync(HttpContext http)
    {
        var ct = http.RequestAborted;
        var request = await sessions.OpenAsync(http);

        // 1. Our own form, from this signed-in person.
        if (!await request.IsFormGenuineAsync())
        {
            await SignInPages.FormNotVerifiedAsync(request);
            return;
        }
        if (request.User is not { } user)
        {
            Layout.Redirect(http, "/signin?return=%2Fapps", afterPost: true);
            return;
        }

        // 2. Revoke every grant of that application for this person, at once.
        var form = await http.Request.ReadFormAsync(ct);
        string clientId = (string?)form["client_id"] ?? "";
        var profile = await store.FindProfileSummaryAsync(clientId, ct);
        var result = await UserApps.RemoveAsync(store, user.RowId, clientId, time, ct);
        if (result.Problem is not null || profile is null)
        {
            await Layout.WriteAsync(http, StatusCodes.Status404NotFound, await PageAsync(request, user, null, "That application is not in your list any more."));
            return;
        }
        Layout.Redirect(http, "/apps?removed=" + Uri.EscapeDataString(profile.Name), afterPost: true);
    }

    private async Task<Markup> PageAsync(WebRequest request, User user, string? notice, string? problem = null)
    {
        var apps = await store.ListUserAppsAsync(user.RowId, request.Http.RequestAborted);
        var list = apps.Count == 0
            ? Markup.Html($"""<p class="card">No application has access to your account.</p>""")
            : Markup.Join(apps, app => Markup.Html($"""
                <section class="card" aria-labelledby="app-{app.ClientId}">
                <h2 id="app-{app.ClientId}">{app.Name}</h2>
                <p class="muted">Has access since {app.Since.ToString("d MMMM yyyy", CultureInfo.InvariantCulture)}. It can see:</p>
                {ScopeText.List(app.Scope.Split(' ', StringSplitOptions.RemoveEmptyEntries))}
                <form method="post" action="/apps/remove">
                {request.CsrfField()}
                <input type="hidden" name="client_id" value="{app.ClientId}">
                <button type="submit" class="danger" aria-label="Remove {app.Name}">Remove access</button>
                </form>
                </section>
                """));
        return Layout.Page(request, "Your apps", Markup.Html($"""
            <h1>Your apps</h1>
            {Markup.When(notice is not null, Markup.Html($"""<div class="notice" role="status">{notice}</div>"""))}
            {Markup.When(problem is not null, Markup.Html($"""<div class="alert" role="alert">{problem}</div>"""))}
            <p>These applications can use your account. Removing one ends its access at once, on every device; it will have to ask you again.</p>
            {list}
            """));
    }
}
