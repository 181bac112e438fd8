using System.CommandLine;
using System.Globalization;
using Tollgate.Server.Admin;
using Tollgate.Server.Storage;

namespace Tollgate.Cli;

/// <summary>
/// The profile commands behind the developer console: everything the console does, a script can do
/// (list, show, return URLs, secret rotation, activity). Output is JSON on stdout, as for every command.
/// </summary>
internal static class ProfileCommands
{
    public static Command List()
    {
        var owner = new Option<string?>("--owner") { Description = "Only the profiles of this developer (email)" };
        var db = TollgateCli.DbOption();
        var command = new Command("list", "List security profiles; prints a JSON array") { owner, db };
        command.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            long? ownerRowId = null;
            if (parsed.GetValue(owner) is { } email)
            {
                if (await store.FindUserByEmailAsync(email, ct) is not { } user)
                {
                    return await TollgateCli.FailAsync(TollgateCli.Failure, $"no user has email {email}");
                }
                ownerRowId = user.RowId;
            }
            var profiles = await store.ListProfilesAsync(ownerRowId, ct);
            return await AdminCommands.PrintAsync(AdminResult<IReadOnlyList<ProfileSummary>>.From(profiles), _ => [], profiles.Select(Summary).ToList());
        }));
        return command;
    }

    public static Command Show()
    {
        var clientId = ClientIdOption();
        var db = TollgateCli.DbOption();
        var command = new Command("show", "Show a security profile: return URLs, scopes, secrets' dates (never the secrets)") { clientId, db };
        command.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            string id = parsed.GetValue(clientId)!;
            var summary = await store.FindProfileSummaryAsync(id, ct);
            var profile = await store.FindProfileAsync(id, ct);
            if (summary is null || profile is null)
            {
                return await TollgateCli.FailAsync(TollgateCli.Failure, $"no security profile has client id {id}");
            }
            var details = Summary(summary);
            details["return_urls"] = profile.ReturnUrls.Order(StringComparer.Ordinal).ToList();
            details["scopes"] = profile.RegisteredScopes.Order(StringComparer.Ordinal).ToList();
            details["secrets"] = (await store.ListClientSecretsAsync(id, ct)).Select(s => new Dictionary<string, object?>
            {
                ["created_at"] = Time(s.CreatedAt),
                ["expires_at"] = s.ExpiresAt is { } e ? Time(e) : null,
            }).ToList();
            return await AdminCommands.PrintAsync(AdminResult<string>.From(id), _ => details);
        }));
        return command;
    }

    public static Command AddReturnUrl() => ReturnUrlCommand("add-return-url", "Add an Allowed Return URL",
        (store, id, url, ct) => SecurityProfiles.AddReturnUrlAsync(store, null, id, url, ct));

    public static Command RemoveReturnUrl() => ReturnUrlCommand("remove-return-url", "Remove an Allowed Return URL (not the last one)",
        (store, id, url, ct) => SecurityProfiles.RemoveReturnUrlAsync(store, null, id, url, ct));

    private static Command ReturnUrlCommand(
        string name, string description, Func<ITokenStore, string, string, CancellationToken, Task<AdminResult<string>>> change)
    {
        var clientId = ClientIdOption();
        var url = new Option<string>("--return-url") { Description = "The URL, exactly", Required = true };
        var db = TollgateCli.DbOption();
        var command = new Command(name, description + "; prints {\"client_id\",\"return_urls\"}") { clientId, url, db };
        command.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            string id = parsed.GetValue(clientId)!;
            var result = await change(store, id, parsed.GetValue(url)!, ct);
            var urls = result.Problem is null ? (await store.FindProfileAsync(id, ct))?.ReturnUrls.Order(StringComparer.Ordinal).ToList() : null;
            return await AdminCommands.PrintAsync(result, _ => new Dictionary<string, object?> { ["client_id"] = id, ["return_urls"] = urls });
        }));
        return command;
    }

    public static Command Activity()
    {
        var clientId = ClientIdOption();
        var hours = new Option<int>("--hours") { Description = "How many hours back (default 24)", DefaultValueFactory = _ => 24 };
        var db = TollgateCli.DbOption();
        var command = new Command("activity", "Token requests issued and refused per hour; prints a JSON array") { clientId, hours, db };
        command.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            string id = parsed.GetValue(clientId)!;
            if (await store.FindProfileSummaryAsync(id, ct) is null)
            {
                return await TollgateCli.FailAsync(TollgateCli.Failure, $"no security profile has client id {id}");
            }
            var now = TimeProvider.System.GetUtcNow();
            var from = Server.Web.ActivityChart.Truncate(now).AddHours(-(Math.Clamp(parsed.GetValue(hours), 1, 24 * 366) - 1));
            var rows = (await store.GetTokenActivityAsync(id, from, now.AddHours(1), ct)).Select(h => new Dictionary<string, object?>
            {
                ["hour"] = Time(h.Hour),
                ["issued"] = h.Issued,
                ["refused"] = h.Refused,
            }).ToList();
            return await AdminCommands.PrintAsync(AdminResult<string>.From(id), _ => [], rows);
        }));
        return command;
    }

    private static Option<string> ClientIdOption() => new("--client-id") { Description = "The security profile's client id", Required = true };

    private static Dictionary<string, object?> Summary(ProfileSummary p) => new()
    {
        ["client_id"] = p.ClientId,
        ["app_id"] = p.AppId,
        ["name"] = p.Name,
        ["public"] = p.IsPublic,
        ["refresh_policy"] = p.RefreshPolicy.ToName(),
        ["created_at"] = Time(p.CreatedAt),
        ["active_grants"] = p.ActiveGrants,
    };

    public static string Time(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
}
