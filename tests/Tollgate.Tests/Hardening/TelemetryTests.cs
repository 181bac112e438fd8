using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Hardening;

/// <summary>What operators see: Prometheus metrics, trace spans, JSON logs without secrets, liveness and readiness.</summary>
public sealed class TelemetryTests
{
    private const string Scope = "videocentral::reporting";

    [Fact]
    public async Task Metrics_count_tokens_by_grant_errors_by_code_latency_and_commit_batches()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite);
        var (profile, tokens) = await host.AuthorizeAsync();
        await host.RefreshAsync(profile, tokens.RefreshToken);
        await host.PostTokenAsync(("grant_type", "nonsense"));

        string metrics = await host.Http.GetStringAsync("/metrics");

        Assert.Matches("tollgate_tokens_issued(_token)?_total\\{[^}]*grant_type=\"authorization_code\"", metrics);
        Assert.Matches("tollgate_tokens_issued(_token)?_total\\{[^}]*grant_type=\"refresh_token\"", metrics);
        Assert.Matches("tollgate_errors(_error)?_total\\{[^}]*error=\"unsupported_grant_type\"", metrics);
        Assert.Matches("tollgate_token_duration_seconds_bucket\\{", metrics);
        Assert.Matches("tollgate_store_commit_batch_size[a-z_]*_bucket\\{", metrics);
        Assert.Contains("http_server_request_duration_seconds", metrics, StringComparison.Ordinal);
        Assert.DoesNotContain(tokens.RefreshToken, metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Readyz_reports_a_reachable_current_store_and_healthz_is_alive()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite);

        var ready = await host.GetAsync("/readyz");
        var live = await host.Http.GetStringAsync("/healthz");

        Assert.Equal(HttpStatusCode.OK, ready.Status);
        Assert.Equal("ready", ready["status"]);
        Assert.Equal(Server.Storage.Sqlite.SqliteMigrations.LatestVersion.ToString(System.Globalization.CultureInfo.InvariantCulture), ready["schema_version"]);
        Assert.Equal("ok\n", live);
    }

    [Fact]
    public async Task Readyz_is_503_when_the_schema_is_behind()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite);
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={host.Database.SqlitePath!};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = $"PRAGMA user_version = {Server.Storage.Sqlite.SqliteMigrations.LatestVersion - 1}";
            command.ExecuteNonQuery();
        }

        var ready = await host.GetAsync("/readyz");

        ready.AssertError(HttpStatusCode.ServiceUnavailable, "temporarily_unavailable");
        Assert.Contains("tollgate db migrate", ready.Description, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Each_token_request_is_a_trace_span_tagged_with_its_request_id()
    {
        var spans = new System.Collections.Concurrent.ConcurrentBag<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Tollgate",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Add,
        };
        ActivitySource.AddActivityListener(listener);
        await using var host = await TollgateHost.StartAsync(StoreKind.Sqlite);
        var profile = await host.CreateProfileAsync(scopes: [Scope]);

        var reply = await host.PostTokenAsync(TollgateHost.WithClient(profile, ("grant_type", "client_credentials"), ("scope", Scope)));

        string requestId = reply.Headers.GetValues("x-amzn-RequestId").Single();
        var span = Assert.Single(spans, s => (string?)s.GetTagItem("tollgate.request_id") == requestId);
        Assert.Equal("token", span.OperationName);
        Assert.Equal("client_credentials", span.GetTagItem("tollgate.grant_type"));
        Assert.Equal("ok", span.GetTagItem("tollgate.outcome"));
        Assert.Equal(profile.ClientId, span.GetTagItem("tollgate.client_id"));
    }

    [Fact]
    public async Task The_server_logs_json_lines_with_request_ids_and_never_a_secret_or_token()
    {
        string directory = TempDirectory.Create();
        try
        {
            string db = "sqlite:" + Path.Combine(directory, "tollgate.db");
            var created = (await TollgateCommand.RunAsync(directory, ["profile", "create", "--name", "A", "--return-url", "https://app.example/cb", "--db", db])).AssertSuccess();
            string clientId = created.Json.GetProperty("client_id").GetString()!;
            string secret = created.Json.GetProperty("client_secret").GetString()!;
            await using var server = await ServerProcess.StartAsync(directory, db, new Dictionary<string, string> { ["Logging__LogLevel__Default"] = "Information" });

            using var wrong = new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["grant_type"] = "client_credentials", ["scope"] = "x", ["client_id"] = clientId, ["client_secret"] = secret + "x",
            });
            using var response = await server.Http.PostAsync("/auth/o2/token", wrong);
            string requestId = response.Headers.GetValues("x-amzn-RequestId").Single();

            string? line = null;
            for (int i = 0; i < 100 && line is null; i++)
            {
                line = server.Output.FirstOrDefault(l => l.Contains(requestId, StringComparison.Ordinal));
                await Task.Delay(50);
            }
            Assert.NotNull(line);
            using var json = JsonDocument.Parse(line);
            Assert.Equal("Information", json.RootElement.GetProperty("LogLevel").GetString());
            Assert.Equal(requestId, json.RootElement.GetProperty("State").GetProperty("RequestId").GetString());
            Assert.All(server.Output, l => Assert.DoesNotContain(secret, l, StringComparison.Ordinal));
        }
        finally
        {
            TempDirectory.Delete(directory);
        }
    }
}
