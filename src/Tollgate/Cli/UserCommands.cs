using System.CommandLine;
using Tollgate.Server.Admin;

namespace Tollgate.Cli;

/// <summary>Developer rights and a person's authorized apps ("Your apps"), from the command line.</summary>
internal static class UserCommands
{
    /// <summary><c>user grant-developer</c> / <c>user revoke-developer</c>: who may use the developer console.</summary>
    public static Command Developer(bool grant)
    {
        var email = new Option<string>("--email") { Description = "The user's email", Required = true };
        var db = TollgateCli.DbOption();
        var command = new Command(grant ? "grant-developer" : "revoke-developer",
            (grant ? "Let this user use the developer console" : "Take the developer console away from this user") + "; prints {\"email\",\"developer\"}")
        {
            email, db,
        };
        command.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            var result = await Users.SetDeveloperAsync(store, parsed.GetValue(email)!, grant, ct);
            return await AdminCommands.PrintAsync(result, e => new Dictionary<string, object?> { ["email"] = e, ["developer"] = grant });
        }));
        return command;
    }

    public static Command Apps()
    {
        var email = new Option<string>("--email") { Description = "The user's email", Required = true };
        var db = TollgateCli.DbOption();
        var command = new Command("apps", "The applications holding access to this user's account; prints a JSON array") { email, db };
        command.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            var result = await UserApps.ListAsync(store, parsed.GetValue(email)!, ct);
            var rows = result.Value?.Select(a => new Dictionary<string, object?>
            {
                ["client_id"] = a.ClientId,
                ["name"] = a.Name,
                ["scope"] = a.Scope,
                ["since"] = ProfileCommands.Time(a.Since),
                ["active_grants"] = a.ActiveGrants,
            }).ToList();
            return await AdminCommands.PrintAsync(result, _ => [], rows);
        }));
        return command;
    }

    public static Command RemoveApp()
    {
        var email = new Option<string>("--email") { Description = "The user's email", Required = true };
        var clientId = new Option<string>("--client-id") { Description = "The application's client id", Required = true };
        var db = TollgateCli.DbOption();
        var command = new Command("remove-app",
            "Revoke every grant (refresh and access tokens) this application holds for the user, as \"Remove\" on Your apps; prints {\"client_id\",\"revoked_grants\"}")
        {
            email, clientId, db,
        };
        command.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            string address = parsed.GetValue(email)!;
            if (await store.FindUserByEmailAsync(address, ct) is not { } user)
            {
                return await TollgateCli.FailAsync(TollgateCli.Failure, $"no user has email {address}");
            }
            string id = parsed.GetValue(clientId)!;
            var result = await UserApps.RemoveAsync(store, user.RowId, id, TimeProvider.System, ct);
            return await AdminCommands.PrintAsync(result, n => new Dictionary<string, object?> { ["client_id"] = id, ["revoked_grants"] = n });
        }));
        return command;
    }
}
