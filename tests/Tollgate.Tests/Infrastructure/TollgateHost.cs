using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Tollgate.Server;
using Tollgate.Server.Admin;
using Tollgate.Server.Storage;

namespace Tollgate.Tests.Infrastructure;

/// <summary>
/// A real Tollgate server for one test: Kestrel on a free loopback port, a fresh database of the
/// given kind (a SQLite file, or a PostgreSQL database of its own), and a fake clock so that expiry
/// is tested to the second without sleeping.
/// </summary>
internal sealed class TollgateHost : IAsyncDisposable
{
    public const string ReturnUrl = "https://app.example/callback";

    private static readonly string[] ServerArgs = ["--Logging:LogLevel:Default=Warning", "--Logging:LogLevel:Tollgate.Errors=None"];

    private readonly Action<TollgateOptions>? _configure;
    private WebApplication _app;

    private TollgateHost(
        WebApplication app, TestDatabase database, ITokenStore store, FakeTimeProvider clock, Uri baseAddress, Action<TollgateOptions>? configure)
    {
        _app = app;
        _configure = configure;
        Database = database;
        Store = store;
        Clock = clock;
        BaseAddress = baseAddress;
        Http = new HttpClient { BaseAddress = baseAddress };
    }

    public TestDatabase Database { get; }

    public StoreKind Kind => Database.Kind;

    public ITokenStore Store { get; private set; }

    public FakeTimeProvider Clock { get; }

    public Uri BaseAddress { get; }

    public HttpClient Http { get; }

    public TollgateOptions Options => _app.Services.GetRequiredService<TollgateOptions>();

    public IServiceProvider Services => _app.Services;

    /// <summary>The server's housekeeping job, to run a prune pass on demand (it uses the fake clock).</summary>
    public Housekeeping Housekeeping => _app.Services.GetRequiredService<Housekeeping>();

    public static async Task<TollgateHost> StartAsync(StoreKind kind, Action<TollgateOptions>? configure = null)
    {
        var database = await TestDatabase.RentAsync(kind);
        var store = database.OpenStore();
        await store.MigrateAsync(CancellationToken.None);
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 11, 29, 12, 0, 0, TimeSpan.Zero));
        var app = await TollgateServer.BuildAsync(ServerArgs, store, clock, configure);
        app.Urls.Add("http://127.0.0.1:0");
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new TollgateHost(app, database, store, clock, new Uri(address), configure);
    }

    /// <summary>
    /// Stops the server and starts a new one on the same port over the same database, reopened: nothing
    /// survives in memory (caches, the Data Protection key ring), only what the store kept.
    /// </summary>
    public async Task RestartAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        await Store.DisposeAsync();
        Store = Database.OpenStore();
        await Store.MigrateAsync(CancellationToken.None);
        _app = await TollgateServer.BuildAsync(ServerArgs, Store, Clock, _configure);
        _app.Urls.Add(BaseAddress.GetLeftPart(UriPartial.Authority));
        await _app.StartAsync();
    }

    public T Service<T>() where T : notnull => _app.Services.GetRequiredService<T>();

    // ---- Arranging: the same operations the admin CLI performs ----

    public async Task<CreatedProfile> CreateProfileAsync(
        bool isPublic = false, string? refreshPolicy = null, string[]? scopes = null, string? clientId = null, string? clientSecret = null,
        string name = "Test app", string? ownerEmail = null)
    {
        var result = await SecurityProfiles.CreateAsync(Store, new ProfileRequest(
            name, [ReturnUrl], scopes ?? [], clientId, clientSecret, isPublic, refreshPolicy, ownerEmail), Clock, CancellationToken.None);
        Assert.Null(result.Problem);
        return result.Value!;
    }

    public const string Password = "correct horse battery";

    public async Task<CreatedUser> CreateUserAsync(string? email = null, bool developer = false, string name = "Test User")
    {
        var result = await Users.CreateAsync(
            Store, email ?? $"user-{Guid.NewGuid():N}@example.com", name, Password, Clock, CancellationToken.None);
        Assert.Null(result.Problem);
        if (developer)
        {
            Assert.Null((await Users.SetDeveloperAsync(Store, result.Value!.Email, true, CancellationToken.None)).Problem);
        }
        return result.Value!;
    }

    public async Task<string> IssueCodeAsync(
        CreatedProfile profile, CreatedUser user, string? scope = null, string? challenge = null, string? method = null)
    {
        var result = await AuthorizationCodes.IssueAsync(Store, new CodeRequest(
            profile.ClientId, ReturnUrl, user.Email, scope, challenge, method), Clock, Options, CancellationToken.None);
        Assert.Null(result.Problem);
        return result.Value!;
    }

    /// <summary>A profile, a user and tokens from a fresh code: the state most refresh tests start from.</summary>
    public async Task<(CreatedProfile Profile, TokenReply Tokens)> AuthorizeAsync(
        bool isPublic = false, string? refreshPolicy = null, string scope = "profile")
    {
        var profile = await CreateProfileAsync(isPublic, refreshPolicy);
        var user = await CreateUserAsync();
        string? verifier = isPublic ? Pkce.NewVerifier() : null;
        string code = await IssueCodeAsync(profile, user, scope, verifier is null ? null : Pkce.S256(verifier), verifier is null ? null : "S256");
        var reply = await PostTokenAsync(WithClient(profile,
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", ReturnUrl), ("code_verifier", verifier)));
        Assert.Equal(HttpStatusCode.OK, reply.Status);
        return (profile, reply);
    }

    // ---- Acting: real HTTP ----

    public static (string, string?)[] WithClient(CreatedProfile profile, params (string, string?)[] parameters) =>
        [.. parameters, ("client_id", profile.ClientId), ("client_secret", profile.ClientSecret)];

    public Task<TokenReply> PostTokenAsync(params (string Name, string? Value)[] parameters) =>
        PostTokenAsync(parameters, authorization: null);

    public Task<TokenReply> PostTokenAsync((string Name, string? Value)[] parameters, AuthenticationHeaderValue? authorization)
    {
        var form = string.Join('&', parameters.Where(p => p.Value is not null)
            .Select(p => $"{Uri.EscapeDataString(p.Name)}={Uri.EscapeDataString(p.Value!)}"));
        return PostRawAsync(form, "application/x-www-form-urlencoded", authorization);
    }

    public async Task<TokenReply> PostRawAsync(string body, string? contentType, AuthenticationHeaderValue? authorization = null) =>
        await PostBytesAsync(Encoding.UTF8.GetBytes(body), contentType, authorization);

    public async Task<TokenReply> PostBytesAsync(byte[] body, string? contentType, AuthenticationHeaderValue? authorization = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/auth/o2/token") { Content = new ByteArrayContent(body) };
        if (contentType is not null)
        {
            request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        }
        request.Headers.Authorization = authorization;
        using var response = await Http.SendAsync(request);
        return await TokenReply.ReadAsync(response);
    }

    public async Task<TokenReply> GetAsync(string pathAndQuery, Action<HttpRequestHeaders>? headers = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, pathAndQuery);
        headers?.Invoke(request.Headers);
        using var response = await Http.SendAsync(request);
        return await TokenReply.ReadAsync(response);
    }

    public Task<TokenReply> TokenInfoAsync(string accessToken) =>
        GetAsync("/auth/o2/tokeninfo?access_token=" + Uri.EscapeDataString(accessToken));

    public Task<TokenReply> RefreshAsync(CreatedProfile profile, string refreshToken) =>
        PostTokenAsync(WithClient(profile, ("grant_type", "refresh_token"), ("refresh_token", refreshToken)));

    // ---- Asserting on the store itself ----

    /// <summary>
    /// Every row of every table, in a stable order: equal snapshots mean the request changed nothing. The audit trail
    /// and the console's activity counts are left out unless asked for: they record attempts (and are written in the background), not state a request changes.
    /// </summary>
    public string Snapshot(bool includeAudit = false) => Kind == StoreKind.Sqlite ? SnapshotSqlite(includeAudit) : SnapshotPostgres(includeAudit);

    private string SnapshotSqlite(bool includeAudit)
    {
        using var connection = new SqliteConnection($"Data Source={Database.SqlitePath};Mode=ReadOnly;Pooling=False");
        connection.Open();
        return Dump(connection, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", includeAudit);
    }

    private string SnapshotPostgres(bool includeAudit)
    {
        using var connection = Database.OpenPostgres();
        return Dump(connection, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name", includeAudit);
    }

    private static string Dump(System.Data.Common.DbConnection connection, string listTables, bool includeAudit)
    {
        var tables = new List<string>();
        using (var list = connection.CreateCommand())
        {
            list.CommandText = listTables;
            using var reader = list.ExecuteReader();
            while (reader.Read())
            {
                // Records of attempts, written in the background (audit trail, the console's activity counts),
                // are not state a request changes.
                if (includeAudit || reader.GetString(0) is not ("audit_events" or "token_activity"))
                {
                    tables.Add(reader.GetString(0));
                }
            }
        }
        var dump = new StringBuilder();
        foreach (var table in tables)
        {
            using var select = connection.CreateCommand();
            // Rows sorted here, not in SQL: some tables have a single column.
            select.CommandText = $"SELECT * FROM \"{table}\"";
            using var reader = select.ExecuteReader();
            dump.Append('[').Append(table).AppendLine("]");
            var rows = new List<string>();
            while (reader.Read())
            {
                var row = new StringBuilder();
                for (int i = 0; i < reader.FieldCount; i++)
                {
                    var value = reader.GetValue(i);
                    row.Append(value is byte[] bytes ? Convert.ToHexString(bytes) : value.ToString()).Append('|');
                }
                rows.Add(row.ToString());
            }
            rows.Sort(StringComparer.Ordinal);
            rows.ForEach(r => dump.AppendLine(r));
        }
        return dump.ToString();
    }

    /// <summary>
    /// Another client holds the store's write lock until disposed (SQLite: an exclusive transaction on the file;
    /// PostgreSQL: an exclusive lock on the token tables), longer than the server waits for a lock.
    /// </summary>
    public IDisposable BlockStore()
    {
        System.Data.Common.DbConnection connection;
        string begin;
        if (Kind == StoreKind.Sqlite)
        {
            connection = new SqliteConnection($"Data Source={Database.SqlitePath};Pooling=False");
            connection.Open();
            begin = "BEGIN EXCLUSIVE";
        }
        else
        {
            connection = Database.OpenPostgres();
            begin = "BEGIN; LOCK TABLE refresh_tokens, grants IN ACCESS EXCLUSIVE MODE";
        }
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                using var command = connection.CreateCommand();
                command.CommandText = begin;
                command.ExecuteNonQuery();
                return new StoreBlock(connection);
            }
            catch (Npgsql.PostgresException e) when (e.SqlState == "40P01" && attempt < 20)
            {
                // Taking table locks under load can deadlock with the server's row locks, and PostgreSQL may pick
                // the blocker as the victim: roll back and take the locks again.
                using var rollback = connection.CreateCommand();
                rollback.CommandText = "ROLLBACK";
                rollback.ExecuteNonQuery();
            }
        }
    }

    private sealed class StoreBlock(System.Data.Common.DbConnection connection) : IDisposable
    {
        public void Dispose()
        {
            using (var rollback = connection.CreateCommand())
            {
                rollback.CommandText = "ROLLBACK";
                rollback.ExecuteNonQuery();
            }
            connection.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
        await Store.DisposeAsync();
        await Database.DisposeAsync();
    }
}

/// <summary>A token-endpoint answer: status, headers and the parsed JSON body.</summary>
internal sealed record TokenReply(HttpStatusCode Status, JsonElement Json, HttpResponseHeaders Headers, string ContentType, string Body)
{
    public string? this[string name] => Json.ValueKind == JsonValueKind.Object && Json.TryGetProperty(name, out var v)
        ? v.ValueKind == JsonValueKind.String ? v.GetString() : v.GetRawText()
        : null;

    public string? Error => this["error"];

    public string? Description => this["error_description"];

    public string AccessToken => this["access_token"] ?? throw new InvalidOperationException($"no access token in {Body}");

    public string RefreshToken => this["refresh_token"] ?? throw new InvalidOperationException($"no refresh token in {Body}");

    public static async Task<TokenReply> ReadAsync(HttpResponseMessage response)
    {
        string body = await response.Content.ReadAsStringAsync();
        JsonElement json;
        try
        {
            json = body.Length == 0 ? default : JsonDocument.Parse(body).RootElement.Clone();
        }
        catch (JsonException)
        {
            json = default;
        }
        return new TokenReply(response.StatusCode, json, response.Headers, response.Content.Headers.ContentType?.ToString() ?? "", body);
    }

    /// <summary>Asserts this is the protocol's error: status, code, a description, and a request id in body and header.</summary>
    public TokenReply AssertError(HttpStatusCode status, string error)
    {
        Assert.True(Status == status, $"expected {(int)status} {error}, got {(int)Status}: {Body}");
        Assert.Equal(error, Error);
        Assert.False(string.IsNullOrWhiteSpace(Description));
        Assert.DoesNotContain("   at ", Body, StringComparison.Ordinal);
        var requestId = this["request_id"];
        Assert.True(Guid.TryParse(requestId, out _), $"request_id missing in {Body}");
        Assert.Equal(requestId, Headers.GetValues("x-amzn-RequestId").Single());
        return this;
    }
}

internal static class Pkce
{
    public static string NewVerifier() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(32))
        .TrimEnd('=').Replace('+', '-').Replace('/', '_');

    public static string S256(string verifier) => Convert.ToBase64String(SHA256.HashData(Encoding.ASCII.GetBytes(verifier)))
        .TrimEnd('=').Replace('+', '-').Replace('/', '_');
}

internal static class TempDirectory
{
    public static string Create()
    {
        var path = Path.Combine(Path.GetTempPath(), "tollgate-tests", Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(path);
        return path;
    }

    public static void Delete(string path)
    {
        try
        {
            System.IO.Directory.Delete(path, recursive: true);
        }
        catch (IOException)
        {
            // A child process may still hold a file for a moment; the OS temp cleaner gets it.
        }
    }
}
