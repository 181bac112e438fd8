using System.Net;
using System.Text;
using Microsoft.Data.Sqlite;
using Tollgate.Server.Admin;
using Tollgate.Server.Crypto;
using Tollgate.Server.Storage;
using Tollgate.Server.Storage.Sqlite;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests;

public sealed class StorageTests : IDisposable
{
    private readonly string _directory = TempDirectory.Create();

    public void Dispose() => TempDirectory.Delete(_directory);

    [Fact]
    public async Task An_older_database_file_is_upgraded_in_place_and_keeps_its_data()
    {
        string path = Path.Combine(_directory, "old.db");
        string clientId;
        await using (var old = SqliteTokenStore.Open(path))
        {
            Assert.Equal(1, (await old.MigrateToAsync(1)).CurrentVersion);
            var created = await SecurityProfiles.CreateAsync(old, new ProfileRequest(
                "Old app", ["https://app.example/cb"], ["videocentral::reporting"], null, null, false, null), TimeProvider.System, CancellationToken.None);
            clientId = created.Value!.ClientId;
        }

        await using var upgraded = SqliteTokenStore.Open(path);
        var status = await upgraded.MigrateAsync(CancellationToken.None);

        Assert.True(status.IsCurrent);
        Assert.Equal(SqliteMigrations.LatestVersion, (await upgraded.GetSchemaStatusAsync(CancellationToken.None)).CurrentVersion);
        var profile = await upgraded.FindProfileAsync(clientId, CancellationToken.None);
        Assert.NotNull(profile);
        Assert.Contains("videocentral::reporting", profile.RegisteredScopes);
        Assert.Equal(1L, Scalar(path, "SELECT count(*) FROM sqlite_master WHERE name = 'authorization_codes_by_expiry'"));
    }

    [Fact]
    public void A_cached_command_refuses_to_run_again_until_every_parameter_is_given_a_new_value()
    {
        // Sessions keep each command's parameters between executions (no allocation per request); a parameter a
        // caller forgets must fail, never bind the previous request's value.
        using var session = new SqliteSession($"Data Source={Path.Combine(_directory, "params.db")};Pooling=False");
        const string Sql = "SELECT $a || '/' || $b";

        Assert.Equal("1/x", session.Command(Sql).With("$a", 1L).With("$b", "x").ExecuteScalar());
        var forgotten = session.Command(Sql).With("$a", 2L);
        var refused = Assert.Throws<InvalidOperationException>(() => forgotten.ExecuteScalar());
        Assert.Equal("Value must be set.", refused.Message);
        Assert.Equal("3/y", session.Command(Sql).With("$b", "y").With("$a", 3L).ExecuteScalar());
        Assert.Equal(2, session.Command(Sql).Parameters.Count);
    }

    private static object? Scalar(string path, string sql)
    {
        using var connection = new SqliteConnection($"Data Source={path};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    [Fact]
    public async Task Refresh_tokens_stored_before_the_chains_of_schema_6_still_rotate_and_are_deleted_with_their_grant()
    {
        string path = Path.Combine(_directory, "v5.db");
        string clientId;
        string live = Secrets.NewRefreshToken(DateTimeOffset.UtcNow), consumed = Secrets.NewRefreshToken(DateTimeOffset.UtcNow);
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await using (var old = SqliteTokenStore.Open(path))
        {
            Assert.Equal(5, (await old.MigrateToAsync(5)).CurrentVersion);
            var created = await SecurityProfiles.CreateAsync(old, new ProfileRequest(
                "Old app", ["https://app.example/cb"], ["videocentral::reporting"], null, null, false, "rotate"), TimeProvider.System, CancellationToken.None);
            clientId = created.Value!.ClientId;
            Assert.True(await old.CreateUserAsync(new NewUser("amzn1.account.OLD", "old@example.com", "Old", "x", DateTimeOffset.UtcNow), CancellationToken.None));
        }
        using (var connection = new SqliteConnection($"Data Source={path};Pooling=False;Foreign Keys=True"))
        {
            connection.Open();
            using var insert = connection.CreateCommand();
            insert.CommandText = """
                INSERT INTO grants (id, profile_id, user_id, scope, created_at) SELECT 7, p.id, u.id, 'profile', $t FROM profiles p, users u;
                INSERT INTO refresh_tokens (token_hash, grant_id, created_at, consumed_at) VALUES ($c, 7, $t, $t), ($l, 7, $t, NULL);
                """;
            insert.Parameters.AddWithValue("$t", now);
            insert.Parameters.AddWithValue("$c", Secrets.StoreKey(consumed));
            insert.Parameters.AddWithValue("$l", Secrets.StoreKey(live));
            insert.ExecuteNonQuery();
        }

        await using var upgraded = SqliteTokenStore.Open(path);
        await upgraded.MigrateAsync(CancellationToken.None);
        var profile = (await upgraded.FindProfileAsync(clientId, CancellationToken.None))!;
        string successor = Secrets.NewRefreshToken(DateTimeOffset.UtcNow);
        var rotation = await upgraded.RotateRefreshTokenAsync(
            Secrets.StoreKey(live), Secrets.StoreKey(successor), profile.RowId, DateTimeOffset.UtcNow, TimeSpan.FromSeconds(30), CancellationToken.None);
        var replayOfTheOldConsumed = await upgraded.FindRefreshTokenAsync(Secrets.StoreKey(consumed), CancellationToken.None);
        Assert.True(await upgraded.DeleteProfileAsync(clientId, CancellationToken.None));

        Assert.Equal(RotationOutcome.Rotated, rotation.Outcome);
        Assert.NotNull(replayOfTheOldConsumed);
        Assert.Equal(0L, Scalar(path, "SELECT count(*) FROM refresh_tokens"));
    }

    [Fact]
    public async Task A_code_redeemed_before_schema_7_is_still_deleted_with_its_grant()
    {
        string path = Path.Combine(_directory, "v6.db");
        byte[] codeHash = Secrets.StoreKey("code-redeemed-under-v6");
        var now = DateTimeOffset.UtcNow;
        long old = now.AddDays(-30).ToUnixTimeMilliseconds(), future = now.AddDays(30).ToUnixTimeMilliseconds();
        await using (var store = SqliteTokenStore.Open(path))
        {
            Assert.Equal(6, (await store.MigrateToAsync(6)).CurrentVersion);
            await SecurityProfiles.CreateAsync(store, new ProfileRequest(
                "Old app", ["https://app.example/cb"], ["profile"], null, null, false, null), TimeProvider.System, CancellationToken.None);
            Assert.True(await store.CreateUserAsync(new NewUser("amzn1.account.OLD", "old@example.com", "Old", "x", now), CancellationToken.None));
        }
        using (var connection = new SqliteConnection($"Data Source={path};Pooling=False;Foreign Keys=True"))
        {
            connection.Open();
            using var insert = connection.CreateCommand();
            // A revoked grant past retention, and the code it came from, which has not expired yet.
            insert.CommandText = """
                INSERT INTO grants (id, profile_id, user_id, scope, created_at, revoked_at) SELECT 7, p.id, u.id, 'profile', $old, $old FROM profiles p, users u;
                INSERT INTO authorization_codes (code_hash, profile_id, user_id, redirect_uri, scope, created_at, expires_at, redeemed_at, grant_id)
                    SELECT $c, p.id, u.id, 'https://app.example/cb', 'profile', $old, $future, $old, 7 FROM profiles p, users u;
                """;
            insert.Parameters.AddWithValue("$old", old);
            insert.Parameters.AddWithValue("$future", future);
            insert.Parameters.AddWithValue("$c", codeHash);
            insert.ExecuteNonQuery();
        }

        await using var upgraded = SqliteTokenStore.Open(path);
        await upgraded.MigrateAsync(CancellationToken.None);
        Assert.Equal(codeHash, Scalar(path, "SELECT code_hash FROM grants WHERE id = 7"));
        var pruned = await upgraded.PruneAsync(new PrunePolicy(now, TimeSpan.FromDays(1), 100), null, CancellationToken.None);

        Assert.Equal(1, pruned.Grants);
        Assert.Equal(0L, Scalar(path, "SELECT count(*) FROM authorization_codes"));
    }

    [Fact]
    public async Task Deleting_a_grant_reaches_every_row_that_points_at_it_through_an_index()
    {
        // Pruning deletes revoked grants hundreds at a time on the single writer, and each delete cascades to the
        // device codes that point at the grant: a table without an index on that link is scanned once per grant,
        // stalling every token request queued behind the prune. (Refresh tokens and authorization codes have no
        // foreign key to their grant since schemas v6 and v7; the store deletes them itself, from what the grant's row
        // names, which HousekeepingTests cover.)
        string path = Path.Combine(_directory, "plan.db");
        await using (var store = SqliteTokenStore.Open(path))
        {
            await store.MigrateAsync(CancellationToken.None);
        }
        using var connection = new SqliteConnection($"Data Source={path};Pooling=False;Foreign Keys=True");
        connection.Open();
        using var plan = connection.CreateCommand();
        plan.CommandText = "EXPLAIN QUERY PLAN DELETE FROM grants WHERE id = 1";
        var steps = new List<string>();
        using (var reader = plan.ExecuteReader())
        {
            while (reader.Read())
            {
                steps.Add(reader.GetString(3));
            }
        }

        Assert.Contains(steps, s => s.Contains("device_codes", StringComparison.Ordinal));
        Assert.DoesNotContain(steps, s => s.StartsWith("SCAN", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Closing_the_store_while_writes_pour_in_answers_every_write_and_loses_none_it_committed()
    {
        // Shutdown races writers: a write may pass the "still open?" check just as closing begins, and the group commit's
        // wake-up may be swallowed by its own reset. Either way, a write must be answered (committed or refused), never
        // left hanging, closing must end, and every write answered as committed must be in the file.
        for (int round = 0; round < 20; round++)
        {
            string path = Path.Combine(_directory, $"closing-{round}.db");
            var store = SqliteTokenStore.Open(path);
            await store.MigrateAsync(CancellationToken.None);
            var committed = new System.Collections.Concurrent.ConcurrentBag<string>();
            var writers = Enumerable.Range(0, 8).Select(writer => Task.Run(async () =>
            {
                for (int i = 0; ; i++)
                {
                    string id = $"closing-{writer}-{i}";
                    try
                    {
                        Assert.True(await store.CreateUserAsync(
                            new NewUser(id, $"{id}@example.test", id, "not a hash", DateTimeOffset.UnixEpoch), CancellationToken.None));
                        committed.Add(id);
                    }
                    catch (ObjectDisposedException)
                    {
                        return;
                    }
                }
            })).ToList();
            // Close at a different point of the stream each round, once it is well under way.
            var started = System.Diagnostics.Stopwatch.StartNew();
            while (committed.Count < 20 + 10 * round && started.Elapsed < TimeSpan.FromSeconds(10))
            {
                await Task.Delay(1);
            }

            // Every writer answered and the store closed, or a TimeoutException: something hung.
            await Task.WhenAll(writers.Append(store.DisposeAsync().AsTask())).WaitAsync(TimeSpan.FromSeconds(30));

            Assert.NotEmpty(committed);
            Assert.Equal((long)committed.Count, Scalar(path, "SELECT count(*) FROM users WHERE user_id LIKE 'closing-%'"));
            await using var reopened = SqliteTokenStore.Open(path);
            foreach (string id in committed.Take(50))
            {
                Assert.NotNull(await reopened.FindUserByUserIdAsync(id, CancellationToken.None));
            }
        }
    }

    [Fact]
    public async Task Migrating_twice_or_from_two_processes_at_once_is_harmless()
    {
        string path = Path.Combine(_directory, "race.db");
        var stores = Enumerable.Range(0, 4).Select(_ => SqliteTokenStore.Open(path)).ToList();

        var statuses = await Task.WhenAll(stores.Select(s => Task.Run(() => s.MigrateAsync(CancellationToken.None))));

        Assert.All(statuses, s => Assert.True(s.IsCurrent));
        foreach (var store in stores)
        {
            await store.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_database_from_a_newer_tollgate_is_refused_with_a_clear_reason()
    {
        string path = Path.Combine(_directory, "future.db");
        using (var connection = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = $"PRAGMA user_version = {SqliteMigrations.LatestVersion + 1}";
            command.ExecuteNonQuery();
        }
        await using var store = SqliteTokenStore.Open(path);

        var error = await Assert.ThrowsAsync<StoreSchemaException>(() => store.MigrateAsync(CancellationToken.None));

        Assert.Contains("newer than this tollgate", error.Message, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task The_database_holds_no_secret_code_password_or_refresh_token_in_the_clear(StoreKind store)
    {
        string secret, code, refresh, password = "correct horse battery";
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(refreshPolicy: "rotate");
        var user = await host.CreateUserAsync();
        code = await host.IssueCodeAsync(profile, user);
        var tokens = await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl)));
        var rotated = await host.RefreshAsync(profile, tokens.RefreshToken);
        Assert.Equal(HttpStatusCode.OK, rotated.Status);
        secret = profile.ClientSecret!;
        refresh = rotated.RefreshToken;

        // SQLite: every byte of the file and its WAL. PostgreSQL: every row of every table, bytes as hex.
        string everything = host.Snapshot();
        if (store == StoreKind.Sqlite)
        {
            string path = host.Database.SqlitePath!;
            using var connection = new SqliteConnection($"Data Source={path};Pooling=False");
            connection.Open();
            using var checkpoint = connection.CreateCommand();
            checkpoint.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)";
            checkpoint.ExecuteNonQuery();
            everything += Encoding.Latin1.GetString(File.ReadAllBytes(path))
                + (File.Exists(path + "-wal") ? Encoding.Latin1.GetString(File.ReadAllBytes(path + "-wal")) : "");
        }

        foreach (var plaintext in new[] { secret, code, refresh, refresh[5..], tokens.RefreshToken[5..], password })
        {
            Assert.DoesNotContain(plaintext, everything, StringComparison.Ordinal);
            Assert.DoesNotContain(Convert.ToHexString(Encoding.UTF8.GetBytes(plaintext)), everything, StringComparison.Ordinal);
        }
        Assert.Contains(Convert.ToHexString(Secrets.Hash(secret)), host.Snapshot(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Concurrent_writes_share_commits_and_each_still_learns_its_own_outcome()
    {
        await using var store = SqliteTokenStore.Open(Path.Combine(_directory, "group.db"));
        await store.MigrateAsync(CancellationToken.None);
        long commitsBefore = store.Writer.Commits;

        var created = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => store.CreateUserAsync(
            new NewUser($"amzn1.account.U{i}", $"u{i % 150}@example.com", "U", "hash", DateTimeOffset.UtcNow), CancellationToken.None)));

        // 150 distinct emails: 150 writes succeed, the 50 duplicates are refused, each on its own.
        Assert.Equal(150, created.Count(c => c));
        Assert.True(store.Writer.Commits - commitsBefore < 200, $"{store.Writer.Commits - commitsBefore} commits for 200 writes");
    }

    [Fact]
    public async Task A_failing_write_rolls_back_alone_and_its_batch_neighbours_commit()
    {
        await using var store = SqliteTokenStore.Open(Path.Combine(_directory, "savepoint.db"));
        await store.MigrateAsync(CancellationToken.None);

        var good = store.Writer.WriteAsync(s => s.Command("INSERT INTO meta (key, value) VALUES ('a', 1)").ExecuteNonQuery());
        var bad = store.Writer.WriteAsync<int>(s =>
        {
            s.Command("INSERT INTO meta (key, value) VALUES ('b', 1)").ExecuteNonQuery();
            throw new InvalidOperationException("boom");
        });
        var alsoGood = store.Writer.WriteAsync(s => s.Command("INSERT INTO meta (key, value) VALUES ('c', 1)").ExecuteNonQuery());

        Assert.Equal(1, await good);
        await Assert.ThrowsAsync<InvalidOperationException>(() => bad);
        Assert.Equal(1, await alsoGood);
        using var connection = new SqliteConnection($"Data Source={Path.Combine(_directory, "savepoint.db")};Pooling=False");
        connection.Open();
        using var count = connection.CreateCommand();
        count.CommandText = "SELECT group_concat(key) FROM (SELECT key FROM meta WHERE key IN ('a', 'b', 'c') ORDER BY key)";
        Assert.Equal("a,c", count.ExecuteScalar());
    }

    [Fact]
    public async Task Under_a_steady_write_load_the_wal_starts_over_instead_of_growing_without_bound()
    {
        // SQLite only starts its WAL over when every frame has been checkpointed at the start of a write; a writer
        // that is never idle never gets there, and the WAL used to grow by every byte written (a disk filled in hours).
        string path = Path.Combine(_directory, "wal.db");
        await using var store = SqliteTokenStore.Open(path);
        await store.MigrateAsync(CancellationToken.None);
        await store.Writer.WriteAsync(s => s.Execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB NOT NULL)"));
        const long FrameBytes = 4096 + 24;
        int writes = 3 * GroupCommitWriter.WalRestartFrames; // one 4 KB row, so at least one WAL frame, each
        int started = 0;
        long largestWal = 0;

        var writers = Enumerable.Range(0, 32).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref started) <= writes)
            {
                await store.Writer.WriteAsync(s => s.Command("INSERT INTO filler (data) VALUES (randomblob(4000))").ExecuteNonQuery());
            }
        })).ToList();
        var all = Task.WhenAll(writers);
        while (!all.IsCompleted)
        {
            largestWal = Math.Max(largestWal, new FileInfo(path + "-wal") is { Exists: true } wal ? wal.Length : 0);
            await Task.Delay(10);
        }
        await all;

        // Without restarts the WAL would hold every frame written: at least `writes` of them.
        Assert.True(largestWal < 2 * GroupCommitWriter.WalRestartFrames * FrameBytes,
            $"the WAL reached {largestWal / (1 << 20)} MiB for {writes * FrameBytes / (1 << 20)} MiB written");
    }
}
