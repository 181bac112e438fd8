using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Tollgate.Server;
using Tollgate.Server.Crypto;
using Tollgate.Server.Storage.Sqlite;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Hardening;

/// <summary>Access-token keys: encrypted under the master key, rotated on schedule with an overlap, retired when no token needs them.</summary>
public sealed class KeyManagementTests
{
    private static readonly string Master = MasterKeys.NewMasterKey();

    private static KeyRing Ring(TollgateHost host) => host.Services.GetRequiredService<KeyRing>();

    private static AccessTokenCodec Codec(TollgateHost host) => host.Services.GetRequiredService<AccessTokenCodec>();

    [Theory, Stores]
    public async Task With_a_master_key_the_store_holds_access_token_keys_only_encrypted(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store, o => o.MasterKey = Master);
        var (_, tokens) = await host.AuthorizeAsync();

        var stored = Assert.Single(await host.Store.ListAccessTokenKeysAsync(CancellationToken.None));
        string masterId = MasterKeys.IdOf(Convert.FromBase64String(Master));
        Assert.Equal(masterId, stored.Protection);
        Assert.Equal(1 + 12 + 32 + 16, stored.Material.Length);
        Assert.Equal(HttpStatusCode.OK, (await host.TokenInfoAsync(tokens.AccessToken)).Status);
    }

    [Theory, Stores]
    public async Task A_store_with_encrypted_keys_refuses_to_serve_without_the_right_master_key_naming_the_setting(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store, o => o.MasterKey = Master);

        var missing = await Assert.ThrowsAsync<InvalidOperationException>(() => TollgateServer.BuildAsync([], host.Store, host.Clock));
        var wrong = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            TollgateServer.BuildAsync([], host.Store, host.Clock, o => o.MasterKey = MasterKeys.NewMasterKey()));

        Assert.StartsWith("invalid configuration: ", missing.Message, StringComparison.Ordinal);
        Assert.Contains("Tollgate:MasterKey is not set", missing.Message, StringComparison.Ordinal);
        Assert.Contains("Tollgate:PreviousMasterKeys", wrong.Message, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task Keys_stored_in_the_clear_are_encrypted_when_a_master_key_is_configured_and_tokens_keep_working(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (_, tokens) = await host.AuthorizeAsync();
        Assert.Null(Assert.Single(await host.Store.ListAccessTokenKeysAsync(CancellationToken.None)).Protection);

        await using var upgraded = await TollgateServer.BuildAsync([], host.Store, host.Clock, o => o.MasterKey = Master);

        Assert.NotNull(Assert.Single(await host.Store.ListAccessTokenKeysAsync(CancellationToken.None)).Protection);
        Assert.NotNull(upgraded.Services.GetRequiredService<AccessTokenCodec>().Open(tokens.AccessToken));
    }

    [Theory, Stores]
    public async Task A_replaced_master_key_listed_as_previous_lets_the_keys_be_re_encrypted(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store, o => o.MasterKey = Master);
        var (_, tokens) = await host.AuthorizeAsync();
        string next = MasterKeys.NewMasterKey();

        await using var rotated = await TollgateServer.BuildAsync([], host.Store, host.Clock, o =>
        {
            o.MasterKey = next;
            o.PreviousMasterKeys = [Master];
        });

        Assert.Equal(MasterKeys.IdOf(Convert.FromBase64String(next)), Assert.Single(await host.Store.ListAccessTokenKeysAsync(CancellationToken.None)).Protection);
        Assert.NotNull(rotated.Services.GetRequiredService<AccessTokenCodec>().Open(tokens.AccessToken));
        await using var withNextOnly = await TollgateServer.BuildAsync([], host.Store, host.Clock, o => o.MasterKey = next);
    }

    [Theory, Stores]
    public async Task Keys_rotate_on_schedule_with_an_overlap_and_retire_when_no_token_needs_them(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store, o => o.MasterKey = Master);
        var codec = Codec(host);
        int first = codec.CurrentKeyId;
        var (profile, tokens) = await host.AuthorizeAsync();

        // Due: the new key is published but not used until every node has had two refreshes to read it.
        host.Clock.Advance(TimeSpan.FromDays(host.Options.Keys.AccessTokenKeyRotationDays));
        await Ring(host).RefreshAsync(CancellationToken.None);
        Assert.Equal(2, (await host.Store.ListAccessTokenKeysAsync(CancellationToken.None)).Count);
        Assert.Equal(first, codec.CurrentKeyId);

        host.Clock.Advance(host.Options.Keys.ActivationDelay);
        await Ring(host).RefreshAsync(CancellationToken.None);
        Assert.NotEqual(first, codec.CurrentKeyId);
        Assert.NotNull(codec.Open(tokens.AccessToken));
        var fresh = await host.RefreshAsync(profile, tokens.RefreshToken);
        Assert.Equal(HttpStatusCode.OK, (await host.TokenInfoAsync(fresh.AccessToken)).Status);

        // Retired once every token sealed with it has expired (lifetime plus an hour of clock skew).
        host.Clock.Advance(host.Options.AccessTokenLifetime + TimeSpan.FromHours(1) + TimeSpan.FromSeconds(1));
        await Ring(host).RefreshAsync(CancellationToken.None);
        Assert.Single(await host.Store.ListAccessTokenKeysAsync(CancellationToken.None));
        Assert.Null(codec.Open(tokens.AccessToken));
        Assert.NotNull(codec.Open(fresh.AccessToken));
    }

    [Theory, Stores]
    public async Task Two_nodes_finding_rotation_due_at_once_add_one_key(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        await using var second = await TollgateServer.BuildAsync([], host.Store, host.Clock);
        host.Clock.Advance(TimeSpan.FromDays(host.Options.Keys.AccessTokenKeyRotationDays));

        await Task.WhenAll(Ring(host).RefreshAsync(CancellationToken.None), second.Services.GetRequiredService<KeyRing>().RefreshAsync(CancellationToken.None));

        Assert.Equal(2, (await host.Store.ListAccessTokenKeysAsync(CancellationToken.None)).Count);
    }

    [Fact]
    public async Task The_keys_commands_make_a_master_key_rotate_now_and_list_without_material()
    {
        string directory = TempDirectory.Create();
        try
        {
            string db = "sqlite:" + Path.Combine(directory, "tollgate.db");
            var made = (await TollgateCommand.RunAsync(directory, ["keys", "new-master-key"])).AssertSuccess();
            string master = made.Stdout.Trim();
            Assert.Equal(32, Convert.FromBase64String(master).Length);
            var env = new Dictionary<string, string> { ["Tollgate__MasterKey"] = master };
            await using (var store = SqliteTokenStore.Open(Path.Combine(directory, "tollgate.db")))
            {
                await store.MigrateAsync(CancellationToken.None);
                await using var app = await TollgateServer.BuildAsync([], store, TimeProvider.System, o => o.MasterKey = master);
            }

            var rotated = (await TollgateCommand.RunAsync(directory, ["keys", "rotate", "--db", db], env: env)).AssertSuccess();
            var listed = (await TollgateCommand.RunAsync(directory, ["keys", "list", "--db", db])).AssertSuccess();

            Assert.Equal(MasterKeys.IdOf(Convert.FromBase64String(master)), rotated.Json.GetProperty("master_key_id").GetString());
            var lines = listed.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToList();
            Assert.Equal(["current", "pending"], lines.Select(l => l.GetProperty("state").GetString()));
            Assert.All(lines, l => Assert.False(l.TryGetProperty("material", out _)));
        }
        finally
        {
            TempDirectory.Delete(directory);
        }
    }
}
