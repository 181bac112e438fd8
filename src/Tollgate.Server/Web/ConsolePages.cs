using System.Globalization;
using Microsoft.AspNetCore.Http;
using Tollgate.Server.Admin;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Web;

/// <summary>
/// The developer console: a developer's own security profiles, created, viewed, changed and deleted
/// through the same <see cref="SecurityProfiles"/> operations as the CLI. Every action checks, in
/// order: signed in, a developer, a genuine form (for changes), and that the profile is theirs.
/// </summary>
internal sealed class ConsolePages(
    WebSessions sessions, ITokenStore store, ProfileCache cache, TokenActivity activity, TimeProvider time)
{
    private const string DateFormat = "d MMM yyyy HH:mm 'UTC'";

    public async Task ListAsync(HttpContext http)
    {
        if (await DeveloperAsync(http, isChange: false) is not { } request)
        {
            return;
        }
        await Layout.WriteAsync(http, StatusCodes.Status200OK, await ListPageAsync(request, problem: null, form: null));
    }

    public async Task CreateAsync(HttpContext http)
    {
        if (await DeveloperAsync(http, isChange: true) is not { } request)
        {
            return;
        }
        var form = await http.Request.ReadFormAsync(http.RequestAborted);
        string name = ((string?)form["name"] ?? "").Trim();
        var urls = ((string?)form["return_urls"] ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var scopes = ((string?)form["scopes"] ?? "").Split([' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries);
        bool isPublic = (string?)form["public"] == "on";
        if (name.Length is 0 or > 200)
        {
            await Layout.WriteAsync(http, StatusCodes.Status400BadRequest, await ListPageAsync(request, "Give the application a name of 1 to 200 characters.", form));
            return;
        }
        var created = await SecurityProfiles.CreateAsync(store, new ProfileRequest(
            name, urls, scopes, ClientId: null, ClientSecret: null, isPublic, RefreshPolicy: null, OwnerEmail: request.User!.Email),
            time, http.RequestAborted, urlLabel: "Return URL");
        if (created.Problem is not null)
        {
            string problem = urls.Length == 0 ? "Add at least one return URL." : created.Problem.Replace("--scope", "Scope", StringComparison.Ordinal);
            await Layout.WriteAsync(http, StatusCodes.Status400BadRequest, await ListPageAsync(request, problem, form));
            return;
        }
        cache.Invalidate();
        // Shown once, on this response only: the store keeps just its hash.
        await ProfilePageAsync(request, created.Value!.ClientId, StatusCodes.Status201Created,
            secret: created.Value.ClientSecret, notice: $"Security profile “{name}” created.");
    }

    public async Task ShowAsync(HttpContext http, string clientId)
    {
        if (await DeveloperAsync(http, isChange: false) is not { } request || !await OwnsAsync(request, clientId))
        {
            return;
        }
        await ProfilePageAsync(request, clientId, StatusCodes.Status200OK, secret: null, notice: http.Request.Query["done"]);
    }

    public async Task AddReturnUrlAsync(HttpContext http, string clientId)
    {
        if (await DeveloperAsync(http, isChange: true) is not { } request || !await OwnsAsync(request, clientId))
        {
            return;
        }
        var form = await http.Request.ReadFormAsync(http.RequestAborted);
        var result = await SecurityProfiles.AddReturnUrlAsync(store, cache, clientId, ((string?)form["url"] ?? "").Trim(), http.RequestAborted, "Return URL");
        await AfterChangeAsync(request, clientId, result.Problem, $"Return URL {result.Value} added.");
    }

    public async Task RemoveReturnUrlAsync(HttpContext http, string clientId)
    {
        if (await DeveloperAsync(http, isChange: true) is not { } request || !await OwnsAsync(request, clientId))
        {
            return;
        }
        var form = await http.Request.ReadFormAsync(http.RequestAborted);
        var result = await SecurityProfiles.RemoveReturnUrlAsync(store, cache, clientId, (string?)form["url"] ?? "", http.RequestAborted);
        await AfterChangeAsync(request, clientId, result.Problem, $"Return URL {result.Value} removed.");
    }

    public async Task RotateSecretAsync(HttpContext http, string clientId)
    {
        if (await DeveloperAsync(http, isChange: true) is not { } request || !await OwnsAsync(request, clientId))
        {
            return;
        }
        var form = await http.Request.ReadFormAsync(http.RequestAborted);
        if (!double.TryParse((string?)form["overlap_days"], NumberStyles.Float, CultureInfo.InvariantCulture, out double days)
            || days is < 0 or > SecurityProfiles.MaxOverlapDays)
        {
            await ProfilePageAsync(request, clientId, StatusCodes.Status400BadRequest, secret: null, notice: null,
                problem: $"The overlap must be a number of days from 0 to {SecurityProfiles.MaxOverlapDays}.");
            return;
        }
        var rotated = await SecurityProfiles.RotateSecretAsync(store, clientId, importedSecret: null, TimeSpan.FromDays(days), time, http.RequestAborted);
        cache.Invalidate();
        if (rotated.Problem is not null)
        {
            await ProfilePageAsync(request, clientId, StatusCodes.Status400BadRequest, secret: null, notice: null, problem: rotated.Problem);
            return;
        }
        await ProfilePageAsync(request, clientId, StatusCodes.Status200OK, secret: rotated.Value!.ClientSecret,
            notice: $"New client secret issued. The previous secret keeps working until {rotated.Value.OldSecretsExpireAt.ToString(DateFormat, CultureInfo.InvariantCulture)}.");
    }

    public async Task DeleteAsync(HttpContext http, string clientId)
    {
        if (await DeveloperAsync(http, isChange: true) is not { } request || !await OwnsAsync(request, clientId))
        {
            return;
        }
        var form = await http.Request.ReadFormAsync(http.RequestAborted);
        if ((string?)form["confirm"] != "on")
        {
            await ProfilePageAsync(request, clientId, StatusCodes.Status400BadRequest, secret: null, notice: null,
                problem: "Tick the box to confirm that every grant and token of this profile will stop working.");
            return;
        }
        await SecurityProfiles.DeleteAsync(store, cache, clientId, http.RequestAborted);
        Layout.Redirect(http, "/console?deleted=" + Uri.EscapeDataString(clientId), afterPost: true);
    }

    // ---- The checks every console action starts with ----

    private async Task<WebRequest?> DeveloperAsync(HttpContext http, bool isChange)
    {
        var request = await sessions.OpenAsync(http);
        if (isChange && !await request.IsFormGenuineAsync())
        {
            await SignInPages.FormNotVerifiedAsync(request);
            return null;
        }
        if (request.User is null)
        {
            Layout.Redirect(http, "/signin?return=%2Fconsole", afterPost: isChange);
            return null;
        }
        if (!request.IsDeveloper)
        {
            await Layout.ProblemAsync(request, StatusCodes.Status403Forbidden, "The developer console is for developers",
                Markup.Html($"""
                    <p>Your account is not a developer account. An administrator can make it one with</p>
                    <p><code>tollgate user grant-developer --email {request.User.Email}</code></p>
                    """));
            return null;
        }
        return request;
    }

    /// <summary>Someone else's profile, or none, gets the same 404: the console does not confirm other developers' client ids.</summary>
    private async Task<bool> OwnsAsync(WebRequest request, string clientId)
    {
        var summary = await store.FindProfileSummaryAsync(clientId, request.Http.RequestAborted);
        if (summary is not null && summary.OwnerUserRowId == request.User!.RowId)
        {
            return true;
        }
        await Layout.ProblemAsync(request, StatusCodes.Status404NotFound, "No such security profile",
            Markup.Html($"""<p>You have no security profile with this client id. <a href="/console">Back to the console</a></p>"""));
        return false;
    }

    private Task AfterChangeAsync(WebRequest request, string clientId, string? problem, string done) => problem is null
        ? RedirectToProfile(request, clientId, done)
        : ProfilePageAsync(request, clientId, StatusCodes.Status400BadRequest, secret: null, notice: null, problem: problem);

    private static Task RedirectToProfile(WebRequest request, string clientId, string done)
    {
        Layout.Redirect(request.Http, $"/console/profiles/{Uri.EscapeDataString(clientId)}?done={Uri.EscapeDataString(done)}", afterPost: true);
        return Task.CompletedTask;
    }

    // ---- Pages ----

    private async Task<Markup> ListPageAsync(WebRequest request, string? problem, IFormCollection? form)
    {
        var profiles = await store.ListProfilesAsync(request.User!.RowId, request.Http.RequestAborted);
        string? deleted = request.Http.Request.Query["deleted"];
        var rows = Markup.Join(profiles, p => Markup.Html($"""
            <tr><td><a href="/console/profiles/{Uri.EscapeDataString(p.ClientId)}">{p.Name}</a></td>
            <td class="mono">{p.ClientId}</td><td>{(p.IsPublic ? "public" : "confidential")}</td><td>{p.ActiveGrants}</td></tr>
            """));
        return Layout.Page(request, "Developer console", Markup.Html($"""
            <h1>Developer console</h1>
            {Markup.When(deleted is not null, Markup.Html($"""<div class="notice" role="status">Security profile {deleted} deleted; all its grants and tokens stopped working.</div>"""))}
            <h2>Your security profiles</h2>
            {(profiles.Count == 0 ? Markup.Html($"<p class=\"card\">You have no security profiles yet.</p>") : Markup.Html($"""
                <div class="table-wrap card"><table>
                <thead><tr><th scope="col">Name</th><th scope="col">Client id</th><th scope="col">Type</th><th scope="col">Active grants</th></tr></thead>
                <tbody>{rows}</tbody></table></div>
                """))}
            <h2 id="create">Create a security profile</h2>
            {Markup.When(problem is not null, Markup.Html($"""<div class="alert" role="alert" id="create-problem">{problem}</div>"""))}
            <form method="post" action="/console/profiles" class="card" aria-labelledby="create">
            {request.CsrfField()}
            <label for="name">Application name</label>
            <input id="name" name="name" type="text" required maxlength="200" value="{(string?)form?["name"]}">
            <label for="return_urls">Allowed return URLs <span class="hint">One per line; exact match. https, or http on 127.0.0.1/localhost.</span></label>
            <textarea id="return_urls" name="return_urls" rows="3" required>{(string?)form?["return_urls"]}</textarea>
            <label for="scopes">Extra scopes <span class="hint">Optional, separated by spaces, e.g. videocentral::reporting. Everyone may ask for profile, profile:user_id and postal_code.</span></label>
            <input id="scopes" name="scopes" type="text" value="{(string?)form?["scopes"]}">
            <label class="check"><input type="checkbox" name="public"{Markup.When((string?)form?["public"] == "on", Markup.Html($" checked"))}> <span>Public client (an app that cannot keep a secret: no client secret, PKCE required)</span></label>
            <div class="actions"><button type="submit">Create profile</button></div>
            </form>
            """));
    }

    private async Task ProfilePageAsync(WebRequest request, string clientId, int status, string? secret, string? notice, string? problem = null)
    {
        var ct = request.Http.RequestAborted;
        var summary = await store.FindProfileSummaryAsync(clientId, ct);
        var profile = await store.FindProfileAsync(clientId, ct);
        if (summary is null || profile is null)
        {
            Layout.Redirect(request.Http, "/console", afterPost: false);
            return;
        }
        var secrets = await store.ListClientSecretsAsync(clientId, ct);
        await activity.FlushAsync(ct);
        var now = time.GetUtcNow();
        var hours = await store.GetTokenActivityAsync(clientId, ActivityChart.Truncate(now).AddHours(-(ActivityChart.Hours - 1)), now.AddHours(1), ct);
        string path = "/console/profiles/" + Uri.EscapeDataString(clientId);

        var secretRows = Markup.Join(secrets, s => Markup.Html($"""
            <tr><td>{s.CreatedAt.ToString(DateFormat, CultureInfo.InvariantCulture)}</td>
            <td>{(s.ExpiresAt is null ? "No end (current)" : (s.ExpiresAt <= now ? "Expired " : "Until ") + s.ExpiresAt.Value.ToString(DateFormat, CultureInfo.InvariantCulture))}</td></tr>
            """));
        var urlRows = Markup.Join(profile.ReturnUrls.Order(StringComparer.Ordinal), url => Markup.Html($"""
            <li><span class="mono">{url}</span>
            <form method="post" action="{path}/return-urls/remove">{request.CsrfField()}<input type="hidden" name="url" value="{url}"><button type="submit" class="link" aria-label="Remove {url}">Remove</button></form></li>
            """));
        var page = Layout.Page(request, summary.Name, Markup.Html($"""
            <p><a href="/console">← All security profiles</a></p>
            <h1>{summary.Name}</h1>
            {Markup.When(notice is not null, Markup.Html($"""<div class="notice" role="status">{notice}</div>"""))}
            {Markup.When(problem is not null, Markup.Html($"""<div class="alert" role="alert">{problem}</div>"""))}
            {Markup.When(secret is not null, Markup.Html($"""
                <div class="card" role="status"><p><strong>Client secret</strong>: copy it now, it is not shown again.</p>
                <code class="secret" id="client-secret">{secret}</code></div>
                """))}
            <div class="card"><dl>
            <dt>Client id</dt><dd class="mono" id="client-id">{summary.ClientId}</dd>
            <dt>App id</dt><dd class="mono">{summary.AppId}</dd>
            <dt>Type</dt><dd>{(summary.IsPublic ? "Public client (no secret, PKCE required)" : "Confidential client")}</dd>
            <dt>Refresh tokens</dt><dd>{(summary.RefreshPolicy == RefreshPolicy.Rotate ? "Rotate on every use" : "Reused until revoked (as Amazon)")}</dd>
            <dt>Scopes</dt><dd>profile, profile:user_id, postal_code{(profile.RegisteredScopes.Count > 0 ? ", " + string.Join(", ", profile.RegisteredScopes.Order(StringComparer.Ordinal)) : "")}</dd>
            <dt>Created</dt><dd>{summary.CreatedAt.ToString(DateFormat, CultureInfo.InvariantCulture)}</dd>
            <dt>Active grants</dt><dd>{summary.ActiveGrants}</dd>
            </dl></div>

            <h2>Token activity, last 24 hours</h2>
            <div class="card">{ActivityChart.Render(hours, now)}</div>

            <h2>Allowed return URLs</h2>
            <div class="card">
            <ul>{urlRows}</ul>
            <form method="post" action="{path}/return-urls">
            {request.CsrfField()}
            <label for="url">Add a return URL</label>
            <input id="url" name="url" type="text" inputmode="url" required maxlength="2000" placeholder="https://app.example/callback">
            <div class="actions"><button type="submit" class="secondary">Add URL</button></div>
            </form>
            </div>

            {Markup.When(!summary.IsPublic, Markup.Html($"""
                <h2>Client secrets</h2>
                <div class="card">
                <div class="table-wrap"><table><thead><tr><th scope="col">Created</th><th scope="col">Works</th></tr></thead><tbody>{secretRows}</tbody></table></div>
                <form method="post" action="{path}/rotate-secret">
                {request.CsrfField()}
                <label for="overlap_days">Keep the current secret working for <span class="hint">Days, 0 to {SecurityProfiles.MaxOverlapDays}; your deployed clients switch to the new secret meanwhile.</span></label>
                <input id="overlap_days" name="overlap_days" type="number" min="0" max="{SecurityProfiles.MaxOverlapDays}" step="any" value="{SecurityProfiles.DefaultOverlapDays}" required>
                <div class="actions"><button type="submit">Rotate secret</button></div>
                </form>
                </div>
                """))}

            <h2>Delete this security profile</h2>
            <form method="post" action="{path}/delete" class="card">
            {request.CsrfField()}
            <label class="check"><input type="checkbox" name="confirm" required> <span>I understand that every grant, refresh token and access token of this profile stops working at once.</span></label>
            <div class="actions"><button type="submit" class="danger">Delete profile</button></div>
            </form>
            """));
        await Layout.WriteAsync(request.Http, status, page);
    }
}
