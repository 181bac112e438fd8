using System.CommandLine;
using System.Text.Json;
using Tollgate.Server;
using Tollgate.Server.Admin;
using Tollgate.Server.Audit;

namespace Tollgate.Cli;

/// <summary>
/// The admin commands: a contract that scripts and tests call, documented in the README.
/// Each works while a server runs on the same database (SQLite's busy timeout and the server's
/// profile-cache refresh make that safe). Results are JSON on stdout, reasons on stderr.
/// </summary>
internal static class AdminCommands
{
    public static Command Profile()
    {
        var name = new Option<string>("--name") { Description = "A name for the application", Required = true };
        var returnUrls = new Option<string[]>("--return-url")
        {
            Description = "An Allowed Return URL (repeat for more)", Required = true, AllowMultipleArgumentsPerToken = false,
        };
        var scopes = new Option<string[]>("--scope") { Description = "A scope to register for this profile, e.g. videocentral::reporting (repeatable)" };
        var clientId = new Option<string?>("--client-id") { Description = "Import this client id instead of generating one" };
        var clientSecret = new Option<string?>("--client-secret") { Description = "Import this client secret (32+ characters)" };
        var isPublic = new Option<bool>("--public") { Description = "A public client: no secret, PKCE required, rotate by default" };
        var policy = new Option<string?>("--refresh-policy") { Description = "reuse (default for confidential clients) or rotate (default for public)" };
        policy.AcceptOnlyFromAmong("reuse", "rotate");
        var owner = new Option<string?>("--owner") { Description = "Email of the developer who manages it in the developer console" };
        var db = TollgateCli.DbOption();
        var create = new Command("create", "Create a security profile; prints {\"client_id\",\"client_secret\",...}")
        {
            name, returnUrls, scopes, clientId, clientSecret, isPublic, policy, owner, db,
        };
        create.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            var result = await SecurityProfiles.CreateAsync(store, new ProfileRequest(
                parsed.GetValue(name)!, parsed.GetValue(returnUrls) ?? [], parsed.GetValue(scopes) ?? [],
                parsed.GetValue(clientId), parsed.GetValue(clientSecret), parsed.GetValue(isPublic), parsed.GetValue(policy),
                parsed.GetValue(owner)),
                TimeProvider.System, ct);
            return await PrintAsync(result, p => new Dictionary<string, object?>
            {
                ["client_id"] = p.ClientId,
                ["client_secret"] = p.ClientSecret,
                ["app_id"] = p.AppId,
                ["refresh_policy"] = p.RefreshPolicy.ToString().ToLowerInvariant(),
            });
        }));

        var deleteId = new Option<string>("--client-id") { Description = "The profile to delete", Required = true };
        var deleteDb = TollgateCli.DbOption();
        var delete = new Command("delete", "Delete a security profile and invalidate all its grants and tokens") { deleteId, deleteDb };
        delete.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(deleteDb), async store =>
        {
            string id = parsed.GetValue(deleteId)!;
            if (!await store.DeleteProfileAsync(id, ct))
            {
                return await TollgateCli.FailAsync(TollgateCli.Failure, $"no security profile has client id {id}");
            }
            await OpsCommands.AuditAsync(store, AuditEvents.ProfileDeleted, id, "deleted with tollgate profile delete; every grant and token invalidated", ct);
            return await PrintAsync<string>(id, v => new Dictionary<string, object?> { ["deleted"] = v });
        }));

        var rotateId = new Option<string>("--client-id") { Description = "The profile whose secret to rotate", Required = true };
        var rotateSecret = new Option<string?>("--client-secret") { Description = "Import this new secret (32+ characters) instead of generating one" };
        var overlapDays = new Option<int>("--overlap-days")
        {
            Description = "Days the old secret keeps working (default 7, as Amazon does; 0 ends it now)",
            DefaultValueFactory = _ => (int)SecurityProfiles.DefaultSecretOverlap.TotalDays,
        };
        var rotateDb = TollgateCli.DbOption();
        var rotate = new Command("rotate-secret", "Issue a new client secret; the old one works until the overlap ends; prints {\"client_id\",\"client_secret\",...}")
        {
            rotateId, rotateSecret, overlapDays, rotateDb,
        };
        rotate.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(rotateDb), async store =>
        {
            var result = await SecurityProfiles.RotateSecretAsync(store, parsed.GetValue(rotateId)!, parsed.GetValue(rotateSecret),
                TimeSpan.FromDays(parsed.GetValue(overlapDays)), TimeProvider.System, ct);
            if (result.Problem is null)
            {
                await OpsCommands.AuditAsync(store, AuditEvents.SecretRotated, result.Value!.ClientId,
                    $"client secret rotated with tollgate profile rotate-secret; old secret works until {result.Value.OldSecretsExpireAt:o}", ct);
            }
            return await PrintAsync(result, r => new Dictionary<string, object?>
            {
                ["client_id"] = r.ClientId,
                ["client_secret"] = r.ClientSecret,
                ["old_secret_expires_at"] = r.OldSecretsExpireAt.ToUnixTimeSeconds(),
            });
        }));

        return new Command("profile", "Manage security profiles (clients)")
        {
            create, delete, rotate, ProfileCommands.List(), ProfileCommands.Show(), ProfileCommands.AddReturnUrl(),
            ProfileCommands.RemoveReturnUrl(), ProfileCommands.Activity(), OpsCommands.SetRateLimit(),
        };
    }

    public static Command User()
    {
        var email = new Option<string>("--email") { Description = "The user's email (their sign-in name)", Required = true };
        var name = new Option<string>("--name") { Description = "The user's display name", Required = true };
        var db = TollgateCli.DbOption();
        var create = new Command("create", "Create a user; the password is read from stdin; prints {\"user_id\",...}") { email, name, db };
        create.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            string password = ReadPassword();
            var result = await Users.CreateAsync(store, parsed.GetValue(email)!, parsed.GetValue(name)!, password, TimeProvider.System, ct);
            return await PrintAsync(result, u => new Dictionary<string, object?>
            {
                ["user_id"] = u.UserId,
                ["email"] = u.Email,
                ["name"] = u.Name,
            });
        }));
        return new Command("user", "Manage users")
        {
            create, UserCommands.Developer(grant: true), UserCommands.Developer(grant: false), UserCommands.Apps(), UserCommands.RemoveApp(),
        };
    }

    public static Command Code()
    {
        var clientId = new Option<string>("--client-id") { Description = "The security profile's client id", Required = true };
        var returnUrl = new Option<string>("--return-url") { Description = "One of the profile's Allowed Return URLs", Required = true };
        var user = new Option<string>("--user") { Description = "The consenting user's email", Required = true };
        var scope = new Option<string?>("--scope") { Description = "Space-separated scopes (default: profile)" };
        var challenge = new Option<string?>("--code-challenge") { Description = "PKCE code challenge" };
        var method = new Option<string?>("--code-challenge-method") { Description = "S256 or plain (default plain when a challenge is given)" };
        method.AcceptOnlyFromAmong("S256", "plain");
        var db = TollgateCli.DbOption();
        var issue = new Command("issue", "Mint an authorization code as if the user had consented; prints the code alone")
        {
            clientId, returnUrl, user, scope, challenge, method, db,
        };
        issue.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            var result = await AuthorizationCodes.IssueAsync(store, new CodeRequest(
                parsed.GetValue(clientId)!, parsed.GetValue(returnUrl)!, parsed.GetValue(user)!, parsed.GetValue(scope),
                parsed.GetValue(challenge), parsed.GetValue(method)), TimeProvider.System, ServerOptions(), ct);
            if (result.Problem is not null)
            {
                return await TollgateCli.FailAsync(TollgateCli.Failure, result.Problem);
            }
            Console.WriteLine(result.Value);
            return TollgateCli.Success;
        }));
        return new Command("code", "Mint authorization codes") { issue };
    }

    public static Command Db()
    {
        var migrateDb = TollgateCli.DbOption();
        var migrate = new Command("migrate", "Bring the schema to this version of tollgate (commands also do this on their own)") { migrateDb };
        migrate.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(migrateDb), async store =>
            await PrintStatusAsync(await store.GetSchemaStatusAsync(ct))));
        var statusDb = TollgateCli.DbOption();
        var status = new Command("status",
            "Show the schema version, and any database setting that could lose answered tokens in a crash or power cut (durability_risks)")
        {
            statusDb,
        };
        status.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(statusDb), async store =>
        {
            // SQLite's durability is Tollgate's own (synchronous=FULL, always); PostgreSQL's rests on the server's settings too.
            var risks = await store.DescribeRisksAsync(ct);
            return await PrintStatusAsync(await store.GetSchemaStatusAsync(ct), risks.Durability);
        }));
        var pruneDb = TollgateCli.DbOption();
        var prune = new Command("prune",
            "Delete expired codes, consumed refresh tokens and revoked grants older than Tollgate:PruneRetentionSeconds, in small batches; prints the counts")
        {
            pruneDb,
        };
        prune.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(pruneDb), async store =>
        {
            var options = ServerOptions();
            if (options.Validate() is { } problem)
            {
                return await TollgateCli.FailAsync(TollgateCli.Failure, $"invalid configuration: {problem}");
            }
            var result = await store.PruneAsync(
                new Server.Storage.PrunePolicy(DateTimeOffset.UtcNow, options.PruneRetention, options.PruneBatchSize), progress: null, ct);
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["codes"] = result.Codes,
                ["refresh_tokens"] = result.RefreshTokens,
                ["grants"] = result.Grants,
                ["batches"] = result.Batches,
                // Another node's housekeeping held the job; it is doing the same work right now.
                ["skipped"] = result.Skipped,
            }));
            return TollgateCli.Success;
        }));
        return new Command("db", "Database operations") { migrate, status, prune };
    }

    private static Task<int> PrintStatusAsync(Server.Storage.SchemaStatus status, IReadOnlyList<string>? durabilityRisks = null) =>
        PrintAsync<Server.Storage.SchemaStatus>(status, s =>
        {
            var shape = new Dictionary<string, object?>
            {
                ["schema_version"] = s.CurrentVersion,
                ["latest_version"] = s.LatestVersion,
            };
            if (durabilityRisks is not null)
            {
                shape["durability_risks"] = durabilityRisks;
            }
            return shape;
        });

    /// <summary>A minted code gets the lifetime the server is configured with (tollgate.json, Tollgate__* env).</summary>
    internal static TollgateOptions ServerOptions() => TollgateOptions.Load(
        new Microsoft.Extensions.Configuration.ConfigurationBuilder().AddTollgateSources().Build());

    /// <summary>The password is the whole of stdin, less one trailing newline, so <c>echo pw | tollgate user create</c> works.</summary>
    private static string ReadPassword()
    {
        string input = Console.In.ReadToEnd();
        return input.EndsWith("\r\n", StringComparison.Ordinal) ? input[..^2]
            : input.EndsWith('\n') ? input[..^1]
            : input;
    }

    internal static async Task<int> PrintAsync<T>(AdminResult<T> result, Func<T, Dictionary<string, object?>> shape, object? array = null)
    {
        if (result.Problem is not null)
        {
            return await TollgateCli.FailAsync(TollgateCli.Failure, result.Problem);
        }
        // Listing commands print a JSON array instead of one object.
        Console.WriteLine(array is not null ? JsonSerializer.Serialize(array) : JsonSerializer.Serialize(shape(result.Value!)));
        return TollgateCli.Success;
    }
}
