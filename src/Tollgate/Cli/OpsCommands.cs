using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Tollgate.Server.Audit;
using Tollgate.Server.Crypto;
using Tollgate.Server.Storage;

namespace Tollgate.Cli;

/// <summary>Operations commands: the audit trail, per-profile rate limits and the key ring. Output is JSON (one object per line for lists).</summary>
internal static class OpsCommands
{
    /// <summary><c>tollgate profile set-rate-limit --client-id ID (--per-minute N | --default)</c></summary>
    public static Command SetRateLimit()
    {
        var clientId = new Option<string>("--client-id") { Description = "The security profile", Required = true };
        var perMinute = new Option<int?>("--per-minute") { Description = "Token requests a minute for this profile (0: unlimited)" };
        var useDefault = new Option<bool>("--default") { Description = "Follow the server's Tollgate:RateLimits:TokenRequestsPerClientPerMinute again" };
        var db = TollgateCli.DbOption();
        var command = new Command("set-rate-limit", "Set a security profile's token-request rate limit; prints {\"client_id\",\"rate_limit_per_minute\"}")
        {
            clientId, perMinute, useDefault, db,
        };
        command.Validators.Add(result =>
        {
            bool hasLimit = result.GetValue(perMinute) is not null;
            if (hasLimit == result.GetValue(useDefault))
            {
                result.AddError("give exactly one of --per-minute N and --default");
            }
            else if (result.GetValue(perMinute) is < 0 or > 1_000_000)
            {
                result.AddError("--per-minute must be between 0 (unlimited) and 1000000");
            }
        });
        command.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            string id = parsed.GetValue(clientId)!;
            int? limit = parsed.GetValue(perMinute);
            if (!await store.SetProfileRateLimitAsync(id, limit, ct))
            {
                return await TollgateCli.FailAsync(TollgateCli.Failure, $"no security profile has client id {id}");
            }
            await AuditAsync(store, AuditEvents.RateLimitChanged, id, limit is null ? "rate limit: server default" : $"rate limit: {limit} a minute", ct);
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?> { ["client_id"] = id, ["rate_limit_per_minute"] = limit }));
            return TollgateCli.Success;
        }));
        return command;
    }

    /// <summary><c>tollgate audit [--since WHEN] [--client-id ID] [--event NAME] [--limit N]</c></summary>
    public static Command Audit()
    {
        var since = new Option<string?>("--since") { Description = "Only events at or after this time: ISO 8601 (2026-11-29T12:00:00Z) or an age (90s, 15m, 2h, 7d)" };
        var clientId = new Option<string?>("--client-id") { Description = "Only events of this client id" };
        var eventName = new Option<string?>("--event") { Description = "Only this event: " + string.Join(", ", EventNames) };
        var limit = new Option<int?>("--limit") { Description = "At most this many events, newest first (default 100)" };
        var db = TollgateCli.DbOption();
        var command = new Command("audit", "List security events as JSON lines, newest first") { since, clientId, eventName, limit, db };
        command.Validators.Add(result =>
        {
            if (result.GetValue(since) is { } text && ParseSince(text, DateTimeOffset.UtcNow) is null)
            {
                result.AddError($"--since '{text}' is neither an ISO 8601 time nor an age like 15m, 2h or 7d");
            }
            if (result.GetValue(limit) is < 1 or > 1_000_000)
            {
                result.AddError("--limit must be between 1 and 1000000");
            }
            if (result.GetValue(eventName) is { } name && !EventNames.Contains(name))
            {
                result.AddError($"--event must be one of {string.Join(", ", EventNames)}");
            }
        });
        command.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            var query = new AuditQuery(
                parsed.GetValue(since) is { } text ? ParseSince(text, DateTimeOffset.UtcNow) : null,
                parsed.GetValue(clientId), parsed.GetValue(eventName), parsed.GetValue(limit) ?? 100);
            foreach (var record in await store.ListAuditEventsAsync(query, ct))
            {
                var e = record.Event;
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
                {
                    ["id"] = record.Id,
                    ["at"] = e.At.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture),
                    ["event"] = e.Event,
                    ["client_id"] = e.ClientId,
                    ["user_id"] = e.UserId,
                    ["ip"] = e.Ip,
                    ["request_id"] = e.RequestId,
                    ["detail"] = e.Detail,
                }));
            }
            return TollgateCli.Success;
        }));
        return command;
    }

    private static readonly string[] EventNames =
    [
        AuditEvents.ClientAuthenticationFailed, AuditEvents.CodeReplay, AuditEvents.FamilyRevoked, AuditEvents.SecretRotated,
        AuditEvents.ProfileDeleted, AuditEvents.SignInFailed, AuditEvents.RateLimitChanged, AuditEvents.KeyRotated,
    ];

    internal static DateTimeOffset? ParseSince(string text, DateTimeOffset now)
    {
        if (text.Length >= 2 && long.TryParse(text.AsSpan(0, text.Length - 1), NumberStyles.None, CultureInfo.InvariantCulture, out long amount)
            && amount <= 100_000)
        {
            TimeSpan? age = text[^1] switch
            {
                's' => TimeSpan.FromSeconds(amount),
                'm' => TimeSpan.FromMinutes(amount),
                'h' => TimeSpan.FromHours(amount),
                'd' => TimeSpan.FromDays(amount),
                _ => null,
            };
            if (age is not null)
            {
                return now - age.Value;
            }
        }
        return DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at) ? at : null;
    }

    /// <summary>Admin actions are audited too; they have no address or request id (they ran on the server's machine).</summary>
    internal static Task AuditAsync(ITokenStore store, string eventName, string? clientId, string detail, CancellationToken ct) =>
        store.AppendAuditEventsAsync([new AuditEvent(DateTimeOffset.UtcNow, eventName, clientId, null, null, null, detail)], ct);

    /// <summary><c>tollgate keys list | rotate | new-master-key</c></summary>
    public static Command Keys()
    {
        var listDb = TollgateCli.DbOption();
        var list = new Command("list", "List the access-token keys as JSON lines (never their material)") { listDb };
        list.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(listDb), async store =>
        {
            var keys = await store.ListAccessTokenKeysAsync(ct);
            var now = DateTimeOffset.UtcNow;
            var current = keys.Where(k => k.ActivatesAt <= now).MaxBy(k => (k.ActivatesAt, k.Id));
            foreach (var key in keys)
            {
                string state = key == current ? "current" : key.ActivatesAt > now ? "pending" : "previous";
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
                {
                    ["id"] = key.Id,
                    ["state"] = state,
                    ["created_at"] = key.CreatedAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
                    ["activates_at"] = key.ActivatesAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
                    ["master_key_id"] = key.Protection,
                }));
            }
            return TollgateCli.Success;
        }));

        var rotateDb = TollgateCli.DbOption();
        var rotate = new Command("rotate",
            "Add a new access-token key now; servers start sealing with it after two key-refresh periods (older keys keep opening tokens)")
        {
            rotateDb,
        };
        rotate.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(rotateDb), async store =>
        {
            var options = AdminCommands.ServerOptions();
            if (options.Validate() is { } problem)
            {
                return await TollgateCli.FailAsync(TollgateCli.Failure, $"invalid configuration: {problem}");
            }
            var master = MasterKeys.From(options);
            var now = DateTimeOffset.UtcNow;
            var activates = now + options.Keys.ActivationDelay;
            var key = KeyRing.NewStoredKey(master, now, activates);
            await store.AddAccessTokenKeyAsync(key, DateTimeOffset.MaxValue, ct);
            await AuditAsync(store, AuditEvents.KeyRotated, null, $"new access-token key (tollgate keys rotate) activates at {activates:o}", ct);
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["activates_at"] = activates.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
                ["master_key_id"] = key.Protection,
            }));
            return TollgateCli.Success;
        }));

        var newMaster = new Command("new-master-key", "Print a new random master key (base64 of 32 bytes) for Tollgate:MasterKey");
        newMaster.SetAction(_ =>
        {
            Console.WriteLine(MasterKeys.NewMasterKey());
            return TollgateCli.Success;
        });

        return new Command("keys", "Access-token keys and the master key") { list, rotate, newMaster };
    }
}
