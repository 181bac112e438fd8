using System.Text.Json;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests;

/// <summary>Everything the developer console and "Your apps" do, through the real tollgate binary.</summary>
public sealed class CliConsoleCommandsTests : IDisposable
{
    private readonly string _directory = TempDirectory.Create();

    private string Db { get; set; } = "";

    private async Task<TestDatabase> UseAsync(StoreKind store)
    {
        var database = await TestDatabase.CreateAsync(store, _directory);
        Db = database.Location;
        return database;
    }

    private Task<CommandResult> Tollgate(params string[] args) => TollgateCommand.RunAsync(_directory, [.. args, "--db", Db]);

    public void Dispose() => TempDirectory.Delete(_directory);

    [Theory, Stores]
    public async Task Developers_profiles_return_urls_and_secret_rotation_from_the_command_line(StoreKind store)
    {
        await using var database = await UseAsync(store);
        (await TollgateCommand.RunAsync(_directory, ["user", "create", "--email", "dev@example.com", "--name", "Dev", "--db", Db], "password123\n")).AssertSuccess();
        var granted = (await Tollgate("user", "grant-developer", "--email", "dev@example.com")).AssertSuccess();
        Assert.True(granted.Json.GetProperty("developer").GetBoolean());
        Assert.Equal(1, (await Tollgate("user", "grant-developer", "--email", "nobody@example.com")).ExitCode);

        var created = (await Tollgate("profile", "create", "--name", "Robot", "--return-url", "https://robot.example/cb", "--owner", "dev@example.com")).AssertSuccess();
        string clientId = created.Json.GetProperty("client_id").GetString()!;
        (await Tollgate("profile", "create", "--name", "Unowned", "--return-url", "https://other.example/cb")).AssertSuccess();

        var mine = (await Tollgate("profile", "list", "--owner", "dev@example.com")).AssertSuccess().Json;
        var all = (await Tollgate("profile", "list")).AssertSuccess().Json;
        Assert.Equal(JsonValueKind.Array, mine.ValueKind);
        Assert.Equal(clientId, Assert.Single(mine.EnumerateArray()).GetProperty("client_id").GetString());
        Assert.Equal(2, all.GetArrayLength());

        var added = (await Tollgate("profile", "add-return-url", "--client-id", clientId, "--return-url", "https://robot.example/cb2")).AssertSuccess();
        Assert.Equal(2, added.Json.GetProperty("return_urls").GetArrayLength());
        Assert.Equal(1, (await Tollgate("profile", "add-return-url", "--client-id", clientId, "--return-url", "http://robot.example/cb")).ExitCode);
        (await Tollgate("profile", "remove-return-url", "--client-id", clientId, "--return-url", "https://robot.example/cb")).AssertSuccess();
        var last = await Tollgate("profile", "remove-return-url", "--client-id", clientId, "--return-url", "https://robot.example/cb2");
        Assert.Equal(1, last.ExitCode);
        Assert.Contains("at least one return URL", last.Stderr, StringComparison.Ordinal);

        var rotated = (await Tollgate("profile", "rotate-secret", "--client-id", clientId)).AssertSuccess().Json;
        Assert.StartsWith("amzn1.oa2-cs.v1.", rotated.GetProperty("client_secret").GetString(), StringComparison.Ordinal);
        Assert.True(rotated.TryGetProperty("old_secret_expires_at", out _));

        var shown = (await Tollgate("profile", "show", "--client-id", clientId)).AssertSuccess().Json;
        var secrets = shown.GetProperty("secrets").EnumerateArray().ToList();
        Assert.Equal(2, secrets.Count);
        Assert.Equal(JsonValueKind.Null, secrets[0].GetProperty("expires_at").ValueKind);
        Assert.DoesNotContain(created.Json.GetProperty("client_secret").GetString()!, shown.GetRawText(), StringComparison.Ordinal);
        Assert.Equal(0, (await Tollgate("profile", "activity", "--client-id", clientId)).AssertSuccess().Json.GetArrayLength());

        var revoked = (await Tollgate("user", "revoke-developer", "--email", "dev@example.com")).AssertSuccess();
        Assert.False(revoked.Json.GetProperty("developer").GetBoolean());
    }

    [Theory, Stores]
    public async Task A_persons_apps_can_be_listed_and_removed_from_the_command_line(StoreKind store)
    {
        await using var database = await UseAsync(store);
        (await TollgateCommand.RunAsync(_directory, ["user", "create", "--email", "ana@example.com", "--name", "Ana", "--db", Db], "password123\n")).AssertSuccess();
        string clientId = (await Tollgate("profile", "create", "--name", "Reports", "--return-url", "https://app.example/cb")).AssertSuccess()
            .Json.GetProperty("client_id").GetString()!;
        string code = (await Tollgate("code", "issue", "--client-id", clientId, "--return-url", "https://app.example/cb", "--user", "ana@example.com"))
            .AssertSuccess().Stdout.Trim();
        Assert.NotEmpty(code);
        Assert.Equal(0, (await Tollgate("user", "apps", "--email", "ana@example.com")).AssertSuccess().Json.GetArrayLength());

        var removed = (await Tollgate("user", "remove-app", "--email", "ana@example.com", "--client-id", clientId)).AssertSuccess();

        Assert.Equal(0, removed.Json.GetProperty("revoked_grants").GetInt32());
        Assert.Equal(1, (await Tollgate("user", "remove-app", "--email", "ana@example.com", "--client-id", "nope")).ExitCode);
    }
}
