using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Tollgate.Server.Storage;
using Tollgate.Server.Storage.Sqlite;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests;

/// <summary>The admin CLI contract (outputs and exit codes) and the support page's walk-through, against the real binary.</summary>
public sealed class CliTests : IDisposable
{
    // The support page's own example credentials, imported as the page's readers would.
    private const string PageClientId = "amzn1.application-oa2-client.20534a91be57487e9c3547dada8a7394";
    private const string PageClientSecret = "c007c411c9657dde807a11a96a3cfd8a2972f9599ac28de241675832f63cac05";
    private const string PageRedirectUri = "https://development.amazon.com/ap/ibatest";

    private readonly string _directory = TempDirectory.Create();

    /// <summary>The <c>--db</c> of the test's own database (see <see cref="UseAsync"/>).</summary>
    private string Db { get; set; } = "";

    private Task<CommandResult> Tollgate(params string[] args) => TollgateCommand.RunAsync(_directory, args);

    public void Dispose() => TempDirectory.Delete(_directory);

    /// <summary>A fresh database of <paramref name="store"/>'s kind for this test; the SQLite one is tollgate.db in the test directory.</summary>
    private async Task<TestDatabase> UseAsync(StoreKind store)
    {
        var database = await TestDatabase.CreateAsync(store, _directory);
        Db = database.Location;
        return database;
    }

    [Theory, Stores]
    public async Task Profile_create_prints_generated_credentials_in_Amazons_formats(StoreKind store)
    {
        await using var database = await UseAsync(store);
        var result = (await Tollgate("profile", "create", "--name", "Demo", "--return-url", "https://app.example/cb", "--db", Db)).AssertSuccess();

        Assert.Matches("^amzn1\\.application-oa2-client\\.[0-9a-f]{32}$", result.Json.GetProperty("client_id").GetString());
        Assert.Matches("^amzn1\\.oa2-cs\\.v1\\.[0-9a-f]{64}$", result.Json.GetProperty("client_secret").GetString());
        Assert.Equal("reuse", result.Json.GetProperty("refresh_policy").GetString());
    }

    [Theory, Stores]
    public async Task Bad_usage_exits_2_and_other_failures_exit_1_each_with_one_line_on_stderr(StoreKind store)
    {
        await using var database = await UseAsync(store);
        var missingName = await Tollgate("profile", "create", "--return-url", "https://app.example/cb", "--db", Db);
        var badPolicy = await Tollgate("profile", "create", "--name", "x", "--return-url", "https://app.example/cb", "--refresh-policy", "sometimes", "--db", Db);
        var badDb = await Tollgate("profile", "create", "--name", "x", "--return-url", "https://app.example/cb", "--db", "mysql:x");
        var unknownCommand = await Tollgate("frobnicate");
        await Tollgate("profile", "create", "--name", "x", "--return-url", "https://app.example/cb", "--client-id", "dup-id", "--client-secret", PageClientSecret, "--db", Db);
        var duplicate = await Tollgate("profile", "create", "--name", "x", "--return-url", "https://app.example/cb", "--client-id", "dup-id", "--client-secret", PageClientSecret, "--db", Db);
        var unknownUser = await Tollgate("code", "issue", "--client-id", "dup-id", "--return-url", "https://app.example/cb", "--user", "nobody@example.com", "--db", Db);

        foreach (var (result, code) in new[] { (missingName, 2), (badPolicy, 2), (badDb, 2), (unknownCommand, 2), (duplicate, 1), (unknownUser, 1) })
        {
            Assert.Equal(code, result.ExitCode);
            Assert.Single(result.Stderr.Trim().Split('\n'));
            Assert.StartsWith("tollgate: ", result.Stderr, StringComparison.Ordinal);
            Assert.Equal("", result.Stdout);
        }
        Assert.Contains("already exists", duplicate.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_db_defaults_to_tollgate_db_in_the_working_directory_and_TOLLGATE_DB_overrides_it()
    {
        (await Tollgate("profile", "create", "--name", "Default", "--return-url", "https://app.example/cb")).AssertSuccess();
        string envDb = Path.Combine(_directory, "from-env.db");
        (await TollgateCommand.RunAsync(_directory, ["profile", "create", "--name", "Env", "--return-url", "https://app.example/cb"],
            env: new Dictionary<string, string> { ["TOLLGATE_DB"] = "sqlite:" + envDb })).AssertSuccess();

        Assert.True(File.Exists(Path.Combine(_directory, "tollgate.db")));
        Assert.True(File.Exists(envDb));
    }

    [Theory, Stores]
    public async Task User_create_reads_the_password_from_stdin_and_code_issue_prints_the_code_alone(StoreKind store)
    {
        await using var database = await UseAsync(store);
        (await Tollgate("profile", "create", "--name", "Page", "--return-url", PageRedirectUri,
            "--client-id", PageClientId, "--client-secret", PageClientSecret, "--db", Db)).AssertSuccess();

        var user = (await TollgateCommand.RunAsync(_directory, ["user", "create", "--email", "ana@example.com", "--name", "Ana", "--db", Db],
            stdin: "correct horse battery staple\n")).AssertSuccess();
        var code = (await Tollgate("code", "issue", "--client-id", PageClientId, "--return-url", PageRedirectUri, "--user", "ana@example.com", "--db", Db)).AssertSuccess();

        Assert.Matches("^amzn1\\.account\\.[A-Z2-7]{28}$", user.Json.GetProperty("user_id").GetString());
        Assert.Matches("^[A-Za-z0-9_-]{51}\n$", code.Stdout);
    }

    [Theory, Stores]
    public async Task The_support_pages_curl_requests_work_byte_for_byte_against_a_running_server(StoreKind store)
    {
        await using var database = await UseAsync(store);
        // Three CLI commands, as the README walks through them, while the server runs on the same file.
        await using var server = await ServerProcess.StartAsync(_directory, Db);
        (await Tollgate("profile", "create", "--name", "Video Central", "--return-url", PageRedirectUri,
            "--client-id", PageClientId, "--client-secret", PageClientSecret, "--db", Db)).AssertSuccess();
        (await TollgateCommand.RunAsync(_directory, ["user", "create", "--email", "ana@example.com", "--name", "Ana", "--db", Db],
            stdin: "correct horse battery staple")).AssertSuccess();
        string code = (await Tollgate("code", "issue", "--client-id", PageClientId, "--return-url", PageRedirectUri,
            "--user", "ana@example.com", "--db", Db)).AssertSuccess().Stdout.Trim();

        // The page's first command, as curl 7.88 puts it on the wire (host and code swapped).
        string initial = $"grant_type=authorization_code&code={code}&client_id={PageClientId}&client_secret={PageClientSecret}&redirect_uri={PageRedirectUri}";
        var (status, json) = await SendAsCurlAsync(server.BaseAddress, initial);
        Assert.Equal(200, status);
        string refreshToken = json.GetProperty("refresh_token").GetString()!;
        Assert.StartsWith("Atza|", json.GetProperty("access_token").GetString(), StringComparison.Ordinal);
        Assert.Equal("bearer", json.GetProperty("token_type").GetString());
        Assert.Equal(3600, json.GetProperty("expires_in").GetInt32());

        // The page's second command: curl --data sends the refresh token raw, '|' and all.
        string ordinary = $"grant_type=refresh_token&refresh_token={refreshToken}&client_id={PageClientId}&client_secret={PageClientSecret}";
        var (refreshStatus, refreshed) = await SendAsCurlAsync(server.BaseAddress, ordinary);
        Assert.Equal(200, refreshStatus);
        Assert.Equal(refreshToken, refreshed.GetProperty("refresh_token").GetString());

        // The page's first command pasted literally: the missing '\' after the code line sends only two fields.
        var (truncatedStatus, truncated) = await SendAsCurlAsync(server.BaseAddress, $"grant_type=authorization_code&code={code}");
        Assert.Equal(401, truncatedStatus);
        Assert.Equal("invalid_client", truncated.GetProperty("error").GetString());
        Assert.Contains("client_id is missing", truncated.GetProperty("error_description").GetString(), StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task Every_token_the_server_answered_with_survives_kill_minus_9(StoreKind store)
    {
        await using var database = await UseAsync(store);
        await using var server = await StartRotatingServerAsync();
        var clients = await StartRotatingClientsAsync(server);
        await clients.WaitUntilTheTestMeansSomethingAsync();
        await Task.Delay(Random.Shared.Next(1000)); // then kill at a moment nobody chose
        server.KillHard();
        await clients.StopAsync();

        await AssertEveryAnsweredTokenSurvivedARestartAsync(database, clients, "kill -9");
    }

    [Theory, Stores]
    public async Task A_server_stopped_with_SIGTERM_under_load_exits_promptly_and_keeps_every_token_it_answered_with(StoreKind store)
    {
        // What a deploy does to every node: SIGTERM while clients are rotating. The server must drain and exit on its
        // own, well inside systemd's 90 s before it would SIGKILL, and what it answered must all be in the store.
        await using var database = await UseAsync(store);
        await using var server = await StartRotatingServerAsync();
        var clients = await StartRotatingClientsAsync(server);
        await clients.WaitUntilTheTestMeansSomethingAsync();
        clients.ServerMayFailFromNowOn(); // a stopping server refuses new connections

        int? exitCode = await server.TerminateAsync(TimeSpan.FromSeconds(30));
        await clients.StopAsync();

        Assert.True(exitCode is not null, "tollgate serve was still running 30 s after SIGTERM");
        Assert.Equal(0, exitCode);
        await AssertEveryAnsweredTokenSurvivedARestartAsync(database, clients, "SIGTERM");
    }

    /// <summary>Starts the server again on the same store: every token the clients were answered with must be there, and work.</summary>
    private async Task AssertEveryAnsweredTokenSurvivedARestartAsync(TestDatabase database, RotatingClients clients, string after)
    {
        await using var restarted = await ServerProcess.StartAsync(_directory, Db, RotatingServerEnvironment);
        await using var check = database.OpenStore();
        await clients.AssertEveryAnsweredTokenSurvivedAsync(check, restarted.Http, after);
    }

    /// <summary>
    /// PostgreSQL itself dies mid-load: every process of its cluster is stopped and killed at once, so whatever a backend
    /// had not yet flushed to the WAL is gone. A node that answered a rotation before PostgreSQL's commit was durable
    /// (its group commit answering early, or a session with <c>synchronous_commit=off</c>) fails this test and its
    /// code-exchange twin below; checked by running both with that setting in the connection string. The same server
    /// then carries on once PostgreSQL is back, without a restart of its own.
    /// </summary>
    [PostgresFact]
    public Task Every_token_the_server_answered_with_survives_PostgreSQL_killed_mid_load() =>
        RotateThroughAPostgresCrashAsync(cutThePower: false);

    [PostgresFact]
    public Task Every_code_the_server_redeemed_stays_redeemed_after_PostgreSQL_was_killed_mid_load() =>
        RedeemThroughAPostgresCrashAsync(cutThePower: false);

    /// <summary>
    /// The kill above leaves the operating system holding whatever PostgreSQL had written, synced or not, so it cannot
    /// tell a commit that reached the disk from one that only reached the page cache. Here PostgreSQL's data directory is
    /// on the power-cut disk and the database machine loses its power mid-load: only what PostgreSQL fsynced survives.
    /// Both this test and its code-exchange twin fail against a cluster run with <c>fsync=off</c>, which passes the
    /// kill tests (checked: after the cut the whole database was gone), and with <c>synchronous_commit=off</c> in the
    /// node's connection string, as the kill tests do.
    /// </summary>
    [PostgresPowerCutFact]
    public Task Every_token_the_server_answered_with_survives_a_power_cut_of_the_PostgreSQL_machine() =>
        RotateThroughAPostgresCrashAsync(cutThePower: true);

    [PostgresPowerCutFact]
    public Task Every_code_the_server_redeemed_stays_redeemed_after_a_power_cut_of_the_PostgreSQL_machine() =>
        RedeemThroughAPostgresCrashAsync(cutThePower: true);

    private async Task RotateThroughAPostgresCrashAsync(bool cutThePower)
    {
        await using var postgres = await PrivatePostgres.StartAsync(onPowerCutDisk: cutThePower);
        Db = "postgres:" + postgres.ConnectionString;
        await using var server = await StartRotatingServerAsync();
        var clients = await StartRotatingClientsAsync(server);
        var (check, crash) = await CrashPostgresUnderLoadAsync(postgres, clients, cutThePower);
        await using (check)
        {
            await clients.AssertEveryAnsweredTokenSurvivedAsync(check, server.Http, crash);
        }
    }

    /// <summary>The code redemptions' batches, as with rotations: a lost redemption would let a code be exchanged twice.</summary>
    private async Task RedeemThroughAPostgresCrashAsync(bool cutThePower)
    {
        await using var postgres = await PrivatePostgres.StartAsync(onPowerCutDisk: cutThePower);
        Db = "postgres:" + postgres.ConnectionString;
        await using var server = await StartRotatingServerAsync();
        string[] codes;
        await using (var store = global::Tollgate.Server.Storage.Postgres.PostgresTokenStore.Open(postgres.ConnectionString))
        {
            codes = await IssueCodesAsync(store, 3000);
        }
        var clients = new RedeemingClients(server.Http, codes);
        var (check, crash) = await CrashPostgresUnderLoadAsync(postgres, clients, cutThePower);
        await using (check)
        {
            await clients.AssertEveryRedeemedCodeStaysRedeemedAsync(check, server.Http, crash);
        }
    }

    /// <summary>
    /// Kills the cluster, or cuts its machine's power, under load at a moment nobody chose; starts it again and opens a
    /// store on it for the checks. With an account of the crash for the failure messages.
    /// </summary>
    private static async Task<(ITokenStore Check, string Crash)> CrashPostgresUnderLoadAsync(
        PrivatePostgres postgres, LoadingClients clients, bool cutThePower)
    {
        await clients.WaitUntilTheTestMeansSomethingAsync();
        await Task.Delay(Random.Shared.Next(1000));
        clients.ServerMayFailFromNowOn(); // with its database gone, the node answers 503 until it is back
        string crash = "PostgreSQL crash";
        if (cutThePower)
        {
            crash = $"power cut of the PostgreSQL machine, {await postgres.CutThePowerAsync()}";
        }
        else
        {
            await postgres.KillAsync();
        }
        await clients.StopAsync();
        await postgres.StartAgainAsync();
        return (global::Tollgate.Server.Storage.Postgres.PostgresTokenStore.Open(postgres.ConnectionString), crash);
    }

    /// <summary>
    /// A database that cannot keep what it acknowledged is the operator's choice (it is common in CI), but not one to
    /// make unknowingly: a node says so when it starts, once per setting, and says nothing on a durable one; and
    /// <c>tollgate db status</c> lists the same risks.
    /// </summary>
    [PostgresFact]
    public async Task A_node_on_a_PostgreSQL_that_does_not_sync_says_so_when_it_starts()
    {
        await using var careless = await PrivatePostgres.StartAsync(settings: "-c fsync=off -c full_page_writes=off");
        await using var durable = await PrivatePostgres.StartAsync();

        var carelessWarnings = await StartupWarningsAsync("postgres:" + careless.ConnectionString);
        var asynchronousWarnings = await StartupWarningsAsync("postgres:" + durable.ConnectionString + ";Options=-c synchronous_commit=off");
        var durableWarnings = await StartupWarningsAsync("postgres:" + durable.ConnectionString);

        var carelessStatus = (await Tollgate("db", "status", "--db", "postgres:" + careless.ConnectionString)).AssertSuccess();
        var durableStatus = (await Tollgate("db", "status", "--db", "postgres:" + durable.ConnectionString)).AssertSuccess();

        Assert.Equal(2, carelessWarnings.Count);
        Assert.Contains(carelessWarnings, w => w.Contains("fsync=off", StringComparison.Ordinal));
        Assert.Contains(carelessWarnings, w => w.Contains("full_page_writes=off", StringComparison.Ordinal));
        Assert.Contains("synchronous_commit=off", Assert.Single(asynchronousWarnings), StringComparison.Ordinal);
        Assert.Empty(durableWarnings);
        // The same, without starting a node: what an operator's check script reads.
        string[] carelessRisks = [.. carelessStatus.Json.GetProperty("durability_risks").EnumerateArray().Select(risk => risk.GetString()!)];
        Assert.Equal(2, carelessRisks.Length);
        Assert.All(carelessRisks, risk => Assert.Single(carelessWarnings, w => w.Contains(risk, StringComparison.Ordinal)));
        Assert.Equal(0, durableStatus.Json.GetProperty("durability_risks").GetArrayLength());
    }

    /// <summary>The durability warnings a <c>tollgate serve</c> on <paramref name="db"/> logged by the time it answered.</summary>
    private async Task<List<string>> StartupWarningsAsync(string db)
    {
        await using var server = await ServerProcess.StartAsync(_directory, db);
        return server.Output.Where(line => line.Contains("fsync=off", StringComparison.Ordinal)
            || line.Contains("full_page_writes=off", StringComparison.Ordinal)
            || line.Contains("synchronous_commit=off", StringComparison.Ordinal)).ToList();
    }

    /// <summary>
    /// The database lives on a disk that holds writes in a volatile cache until they are fsynced, and the power is cut
    /// mid-load. After kill -9 the kernel still writes back what the process wrote; after this, every write that was
    /// not synced is gone, so a token answered before its batch's fsync would be lost here. (On PostgreSQL it is the
    /// database machine whose power the tests above cut.)
    /// </summary>
    [PowerCutFact]
    public Task Every_token_the_server_answered_with_survives_a_power_cut() => CutThePowerUnderRotationsAsync(walRestartsFirst: 0);

    /// <summary>
    /// The writer sends the WAL back to its start once it passes 16 MB (GroupCommitWriter.RestartWal); from then on each
    /// commit overwrites frames that a checkpoint already copied into the database file, and a mistake in that order (a
    /// frame overwritten before the database file holding its page was synced) would lose answered tokens. So here the
    /// cut waits until the WAL has started over twice.
    /// </summary>
    [PowerCutFact]
    public Task Every_token_the_server_answered_with_survives_a_power_cut_after_its_WAL_started_over() =>
        CutThePowerUnderRotationsAsync(walRestartsFirst: 2);

    private async Task CutThePowerUnderRotationsAsync(int walRestartsFirst)
    {
        await using var disk = await PowerCutDisk.MountAsync(_directory);
        Db = "sqlite:" + Path.Combine(disk.MountPoint, DbOnTheDisk);
        await using var server = await StartRotatingServerAsync();
        var clients = await StartRotatingClientsAsync(server);
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(4);
        long restarts;
        while ((restarts = await MetricAsync(server, "tollgate_store_wal_restarts_total")) < walRestartsFirst && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
        }
        Assert.True(restarts >= walRestartsFirst, $"the WAL started over {restarts} times in 4 minutes of rotations; the test proves nothing");
        // Each restart holds up every write while it runs, so operators see how long each took, one per restart at least.
        Assert.True(await MetricAsync(server, "tollgate_store_wal_restart_duration_seconds_count") >= restarts);
        var (restarted, check, cut) = await CutThePowerUnderLoadAsync(disk, server, clients);
        await using (restarted)
        await using (check)
        {
            await clients.AssertEveryAnsweredTokenSurvivedAsync(check, restarted.Http, $"power cut after {restarts} WAL restarts, {cut}");
        }
    }

    /// <summary>
    /// Where the power-cut tests keep the database: in directories that tollgate creates itself, since a new directory's
    /// name lasts a power cut only once the directory above it is synced, and SQLite syncs only the database's own.
    /// </summary>
    private static readonly string DbOnTheDisk = Path.Combine("var", "lib", "tollgate", "tollgate.db");

    /// <summary>A count from the server's Prometheus endpoint, such as its WAL restarts (0 until the first).</summary>
    private static async Task<long> MetricAsync(ServerProcess server, string name)
    {
        string metrics = await server.Http.GetStringAsync("/metrics");
        string? line = metrics.Split('\n').FirstOrDefault(l => l.StartsWith(name + "{", StringComparison.Ordinal) || l.StartsWith(name + " ", StringComparison.Ordinal));
        return line is null ? 0 : (long)double.Parse(line.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    [PowerCutFact]
    public async Task Every_code_the_server_redeemed_stays_redeemed_after_a_power_cut()
    {
        // As above, with one-use authorization codes: a code redeemed before the cut, whose tokens were answered,
        // must not be redeemable after it (a lost redemption would let the code be exchanged twice).
        await using var disk = await PowerCutDisk.MountAsync(_directory);
        string path = Path.Combine(disk.MountPoint, DbOnTheDisk);
        Db = "sqlite:" + path;
        await using var server = await StartRotatingServerAsync();
        string[] codes;
        await using (var store = SqliteTokenStore.Open(path))
        {
            codes = await IssueCodesAsync(store, 3000);
        }
        var clients = new RedeemingClients(server.Http, codes);
        var (restarted, check, cut) = await CutThePowerUnderLoadAsync(disk, server, clients);
        await using (restarted)
        await using (check)
        {
            await clients.AssertEveryRedeemedCodeStaysRedeemedAsync(check, restarted.Http, $"power cut, {cut}");
        }
    }

    /// <summary>
    /// Codes for the support page's client and user, minted as `tollgate code issue` mints them, without a process per
    /// code. A few at a time: all 3,000 at once kept the store's whole pool of 100 connections inserting, queued on the
    /// lock that extends the table, and on the power-cut disk, where each extension is a slow write through FUSE, the
    /// last in that queue waited past the store's 3 s <c>lock_timeout</c> (55P03) on a slower CI machine. That queue
    /// is the test disk's, not what these tests are about (see docs/multi-node.md on lock_timeout).
    /// </summary>
    private static async Task<string[]> IssueCodesAsync(ITokenStore store, int count)
    {
        var issued = new global::Tollgate.Server.Admin.AdminResult<string>[count];
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, ct) =>
            issued[i] = await global::Tollgate.Server.Admin.AuthorizationCodes.IssueAsync(
                store, new(PageClientId, PageRedirectUri, "ana@example.com", null, null, null), TimeProvider.System, new(), ct));
        return issued.Select(code => code.Value ?? throw new InvalidOperationException(code.Problem)).ToArray();
    }

    /// <summary>
    /// Cuts the power under a loaded server at a moment nobody chose, kills it, and starts a new server straight on what
    /// the disk held at the cut; with a store on the same file for the test's own checks, and the daemon's account of the cut.
    /// </summary>
    private async Task<(ServerProcess Restarted, ITokenStore Check, string Cut)> CutThePowerUnderLoadAsync(
        PowerCutDisk disk, ServerProcess server, LoadingClients clients)
    {
        await clients.WaitUntilTheTestMeansSomethingAsync();
        await Task.Delay(Random.Shared.Next(1000));
        clients.ServerMayFailFromNowOn(); // after the cut every fsync fails, and so does every request that needs one
        string cut = await disk.CutPowerAsync();
        server.KillHard();
        await clients.StopAsync();
        await disk.UnmountAsync();

        string survivor = Path.Combine(disk.Backing, DbOnTheDisk);
        Db = "sqlite:" + survivor;
        var restarted = await ServerProcess.StartAsync(_directory, Db, RotatingServerEnvironment);
        return (restarted, SqliteTokenStore.Open(survivor), cut);
    }

    /// <summary>
    /// The grace window must outlast the restart: on PostgreSQL a request in flight at the kill can still commit its
    /// rotation in the database, and on a loaded machine the restart can take minutes. Durability is what is tested here.
    /// </summary>
    private static readonly Dictionary<string, string> RotatingServerEnvironment = new() { ["Tollgate__RotationGraceSeconds"] = "1800" };

    /// <summary>The support page's client, with the rotate policy, and a user, on <see cref="Db"/>; then a server on it.</summary>
    private async Task<ServerProcess> StartRotatingServerAsync()
    {
        (await Tollgate("profile", "create", "--name", "Rotating", "--return-url", PageRedirectUri, "--refresh-policy", "rotate",
            "--client-id", PageClientId, "--client-secret", PageClientSecret, "--db", Db)).AssertSuccess();
        (await TollgateCommand.RunAsync(_directory, ["user", "create", "--email", "ana@example.com", "--name", "Ana", "--db", Db],
            stdin: "correct horse battery staple")).AssertSuccess();
        return await ServerProcess.StartAsync(_directory, Db, RotatingServerEnvironment);
    }

    /// <summary>Each client's first refresh token from a code exchange, then all of them rotating.</summary>
    private async Task<RotatingClients> StartRotatingClientsAsync(ServerProcess server)
    {
        var chains = new List<string>[RotatingClients.Count];
        for (int i = 0; i < chains.Length; i++)
        {
            string code = (await Tollgate("code", "issue", "--client-id", PageClientId, "--return-url", PageRedirectUri,
                "--user", "ana@example.com", "--db", Db)).AssertSuccess().Stdout.Trim();
            var (_, json) = await PostAsync(server.Http, $"grant_type=authorization_code&code={code}&redirect_uri={PageRedirectUri}");
            chains[i] = [json.GetProperty("refresh_token").GetString()!];
        }
        return new RotatingClients(server.Http, chains);
    }

    /// <summary>
    /// Sixteen clients hammering the token endpoint at once, so the group commit really batches (many answers share
    /// one fsync), until the server is stopped. Before <see cref="ServerMayFailFromNowOn"/>, any refusal fails the test.
    /// </summary>
    private abstract class LoadingClients
    {
        public const int Count = 16;
        private readonly CancellationTokenSource _stop = new();
        private Task[] _workers = [];
        private volatile bool _serverMayFail;

        protected abstract int Answered { get; }

        protected bool Stopping => _stop.IsCancellationRequested;

        protected void Start(Func<int, Task> worker) =>
            _workers = Enumerable.Range(0, Count).Select(i => Task.Run(() => worker(i))).ToArray();

        /// <summary>The answer, or null once the server is gone or (when it may) failing.</summary>
        protected async Task<JsonElement?> TryPostAsync(HttpClient http, string form)
        {
            int status;
            JsonElement json;
            try
            {
                (status, json) = await PostAsync(http, form);
            }
            catch (HttpRequestException)
            {
                return null; // the server is gone
            }
            catch (JsonException) when (_serverMayFail)
            {
                return null; // a dying server's answer
            }
            if (status != 200)
            {
                Assert.True(_serverMayFail, $"a request was refused while the server was healthy: {status} {json}");
                return null;
            }
            return json;
        }

        /// <summary>Waits until enough requests were answered for the test to mean something (a loaded machine gets there slowly).</summary>
        public async Task WaitUntilTheTestMeansSomethingAsync()
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
            while (Answered < Count * 5 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }

        public void ServerMayFailFromNowOn() => _serverMayFail = true;

        /// <summary>After the server was stopped: waits for every client to notice.</summary>
        public async Task StopAsync()
        {
            _serverMayFail = true;
            await _stop.CancelAsync();
            await Task.WhenAll(_workers);
            Assert.True(Answered >= Count * 5, $"only {Answered} requests were answered before the server stopped; the test proves nothing");
        }
    }

    /// <summary>
    /// Clients rotating their refresh tokens as fast as they can, each keeping every refresh token it was answered
    /// with. A request in flight when the server dies may have rotated a token whose answer was lost; the grace window
    /// covers that. What must never happen is an answered token that the store forgot.
    /// </summary>
    private sealed class RotatingClients : LoadingClients
    {
        private readonly List<string>[] _chains;

        public RotatingClients(HttpClient http, List<string>[] chains)
        {
            _chains = chains;
            Start(i => RotateAsync(http, chains[i]));
        }

        protected override int Answered => _chains.Sum(c => c.Count - 1);

        private async Task RotateAsync(HttpClient http, List<string> chain)
        {
            while (!Stopping && await TryPostAsync(http, $"grant_type=refresh_token&refresh_token={Uri.EscapeDataString(chain[^1])}") is { } json)
            {
                chain.Add(json.GetProperty("refresh_token").GetString()!);
            }
        }

        /// <summary>
        /// After a restart, the store holds every token any client was answered with: each one but the last of its chain
        /// as consumed (it was rotated), the last one live, and that one works. Nothing answered was forgotten, nothing rolled back.
        /// </summary>
        public async Task AssertEveryAnsweredTokenSurvivedAsync(ITokenStore check, HttpClient restarted, string after)
        {
            foreach (var chain in _chains)
            {
                for (int k = 0; k < chain.Count; k++)
                {
                    var found = await check.FindRefreshTokenAsync(global::Tollgate.Server.Crypto.Secrets.StoreKey(chain[k]), CancellationToken.None);
                    Assert.True(found is not null, $"answered refresh token {k} of {chain.Count} in its chain is missing after the {after}");
                    if (k < chain.Count - 1)
                    {
                        Assert.True(found.ConsumedAt is not null, $"refresh token {k} of {chain.Count} was rotated, but the store lost that in the {after}");
                    }
                }
            }
            foreach (var chain in _chains)
            {
                var (status, json) = await PostAsync(restarted, $"grant_type=refresh_token&refresh_token={Uri.EscapeDataString(chain[^1])}");
                Assert.True(status == 200, $"after the {after}: {json}");
            }
        }
    }

    /// <summary>
    /// Clients exchanging one-use authorization codes as fast as they can, each code once, keeping the refresh token
    /// every exchange was answered with. A code whose exchange was answered must stay redeemed: if its redemption were
    /// lost, the code could be exchanged a second time.
    /// </summary>
    private sealed class RedeemingClients : LoadingClients
    {
        private readonly System.Collections.Concurrent.ConcurrentBag<(string Code, string RefreshToken)> _redeemed = [];

        public RedeemingClients(HttpClient http, IEnumerable<string> codes)
        {
            var unused = new System.Collections.Concurrent.ConcurrentQueue<string>(codes);
            Start(_ => RedeemAsync(http, unused));
        }

        protected override int Answered => _redeemed.Count;

        private async Task RedeemAsync(HttpClient http, System.Collections.Concurrent.ConcurrentQueue<string> unused)
        {
            while (!Stopping && unused.TryDequeue(out string? code)
                && await TryPostAsync(http, $"grant_type=authorization_code&code={code}&redirect_uri={PageRedirectUri}") is { } json)
            {
                _redeemed.Add((code, json.GetProperty("refresh_token").GetString()!));
            }
        }

        /// <summary>
        /// After a restart, every exchanged code's refresh token is in the store and works, and the code itself is spent:
        /// exchanging it again is refused with invalid_grant (which, as RFC 6749 §4.1.2 asks, also revokes what it gave).
        /// </summary>
        public async Task AssertEveryRedeemedCodeStaysRedeemedAsync(ITokenStore check, HttpClient restarted, string after)
        {
            foreach (var (code, refreshToken) in _redeemed)
            {
                var found = await check.FindRefreshTokenAsync(global::Tollgate.Server.Crypto.Secrets.StoreKey(refreshToken), CancellationToken.None);
                Assert.True(found is not null, $"the refresh token an exchanged code was answered with is missing after the {after}");
                var (refreshStatus, refreshed) = await PostAsync(restarted, $"grant_type=refresh_token&refresh_token={Uri.EscapeDataString(refreshToken)}");
                Assert.True(refreshStatus == 200, $"after the {after}: {refreshed}");
                var (replayStatus, replayed) = await PostAsync(restarted, $"grant_type=authorization_code&code={code}&redirect_uri={PageRedirectUri}");
                Assert.True(replayStatus == 400 && replayed.GetProperty("error").GetString() == "invalid_grant",
                    $"a code exchanged before the {after} was exchanged again after it: {replayStatus} {replayed}");
            }
        }
    }

    [Theory, Stores]
    public async Task Deleting_a_profile_with_the_CLI_is_honoured_by_a_running_server_within_the_cache_interval(StoreKind store)
    {
        await using var database = await UseAsync(store);
        (await Tollgate("profile", "create", "--name", "Doomed", "--return-url", PageRedirectUri, "--scope", "videocentral::reporting",
            "--client-id", PageClientId, "--client-secret", PageClientSecret, "--db", Db)).AssertSuccess();
        await using var server = await ServerProcess.StartAsync(_directory, Db);
        Assert.Equal(200, (await PostAsync(server.Http, "grant_type=client_credentials&scope=videocentral::reporting")).Status);

        (await Tollgate("profile", "delete", "--client-id", PageClientId, "--db", Db)).AssertSuccess();
        await Task.Delay(TimeSpan.FromSeconds(2));

        Assert.Equal(401, (await PostAsync(server.Http, "grant_type=client_credentials&scope=videocentral::reporting")).Status);
    }

    [Theory, Stores]
    public async Task Db_migrate_status_and_prune_print_JSON_and_work_on_either_store(StoreKind store)
    {
        await using var database = await UseAsync(store);

        var migrate = (await Tollgate("db", "migrate", "--db", Db)).AssertSuccess();
        var status = (await Tollgate("db", "status", "--db", Db)).AssertSuccess();
        var prune = (await Tollgate("db", "prune", "--db", Db)).AssertSuccess();

        Assert.Equal(migrate.Json.GetProperty("latest_version").GetInt32(), status.Json.GetProperty("schema_version").GetInt32());
        Assert.Equal(0, status.Json.GetProperty("durability_risks").GetArrayLength());
        Assert.Equal(0, prune.Json.GetProperty("codes").GetInt64());
        Assert.Equal(0, prune.Json.GetProperty("refresh_tokens").GetInt64());
        Assert.Equal(0, prune.Json.GetProperty("grants").GetInt64());
        Assert.False(prune.Json.GetProperty("skipped").GetBoolean());
    }

    [Theory, Stores]
    public async Task Profile_rotate_secret_prints_a_new_secret_and_the_old_one_keeps_working_through_the_overlap(StoreKind store)
    {
        await using var database = await UseAsync(store);
        (await Tollgate("profile", "create", "--name", "Rotating", "--return-url", PageRedirectUri, "--scope", "videocentral::reporting",
            "--client-id", PageClientId, "--client-secret", PageClientSecret, "--db", Db)).AssertSuccess();

        var rotated = (await Tollgate("profile", "rotate-secret", "--client-id", PageClientId, "--db", Db)).AssertSuccess();
        var unknown = await Tollgate("profile", "rotate-secret", "--client-id", "nobody", "--db", Db);
        await using var server = await ServerProcess.StartAsync(_directory, Db);

        string newSecret = rotated.Json.GetProperty("client_secret").GetString()!;
        Assert.Matches("^amzn1\\.oa2-cs\\.v1\\.[0-9a-f]{64}$", newSecret);
        long expires = rotated.Json.GetProperty("old_secret_expires_at").GetInt64();
        Assert.InRange(expires - DateTimeOffset.UtcNow.ToUnixTimeSeconds(), 7 * 86400 - 120, 7 * 86400);
        Assert.Equal(1, unknown.ExitCode);
        Assert.Equal(200, (await PostAsync(server.Http, "grant_type=client_credentials&scope=videocentral::reporting")).Status);
        using var content = new StringContent($"grant_type=client_credentials&scope=videocentral::reporting&client_id={PageClientId}&client_secret={newSecret}",
            Encoding.UTF8, "application/x-www-form-urlencoded");
        using var response = await server.Http.PostAsync("/auth/o2/token", content);
        Assert.Equal(200, (int)response.StatusCode);
    }

    private static async Task<(int Status, JsonElement Json)> PostAsync(HttpClient http, string form)
    {
        using var content = new StringContent($"{form}&client_id={PageClientId}&client_secret={PageClientSecret}",
            Encoding.UTF8, "application/x-www-form-urlencoded");
        using var response = await http.PostAsync("/auth/o2/token", content);
        return ((int)response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    /// <summary>Writes the exact bytes curl 7.88 sends for <c>curl --request POST --header 'content-type: ...' --data ...</c>.</summary>
    private static async Task<(int Status, JsonElement Json)> SendAsCurlAsync(Uri server, string body)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(server.Host, server.Port);
        var stream = tcp.GetStream();
        string request =
            "POST /auth/o2/token HTTP/1.1\r\n"
            + $"Host: {server.Host}:{server.Port}\r\n"
            + "User-Agent: curl/7.88.1\r\n"
            + "Accept: */*\r\n"
            + "content-type: application/x-www-form-urlencoded\r\n"
            + $"Content-Length: {Encoding.ASCII.GetByteCount(body)}\r\n"
            + "Connection: close\r\n"
            + "\r\n"
            + body;
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        using var reader = new StreamReader(stream, Encoding.UTF8);
        string response = await reader.ReadToEndAsync();
        int status = int.Parse(response.AsSpan(9, 3), System.Globalization.CultureInfo.InvariantCulture);
        string headers = response[..response.IndexOf("\r\n\r\n", StringComparison.Ordinal)];
        Assert.Contains("Content-Type: application/json;charset=UTF-8", headers, StringComparison.Ordinal);
        Assert.Contains("x-amzn-RequestId: ", headers, StringComparison.Ordinal);
        string payload = response[(headers.Length + 4)..];
        if (headers.Contains("Transfer-Encoding: chunked", StringComparison.Ordinal))
        {
            payload = Dechunk(payload);
        }
        return (status, JsonDocument.Parse(payload).RootElement.Clone());
    }

    private static string Dechunk(string chunked)
    {
        var body = new StringBuilder();
        int position = 0;
        while (true)
        {
            int lineEnd = chunked.IndexOf("\r\n", position, StringComparison.Ordinal);
            int size = Convert.ToInt32(chunked[position..lineEnd], 16);
            if (size == 0)
            {
                return body.ToString();
            }
            body.Append(chunked, lineEnd + 2, size);
            position = lineEnd + 2 + size + 2;
        }
    }
}
