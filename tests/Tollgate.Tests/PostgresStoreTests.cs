using System.Net;
using Npgsql;
using Tollgate.Server.Admin;
using Tollgate.Server.Crypto;
using Tollgate.Server.Storage;
using Tollgate.Server.Storage.Postgres;
using Tollgate.Server.Storage.Sqlite;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests;

/// <summary>What only the PostgreSQL store has to prove: schema versioning under racing nodes, the prune lock, retries.</summary>
public sealed class PostgresStoreTests
{
    [PostgresFact]
    public async Task An_older_database_is_upgraded_in_place_and_keeps_its_data()
    {
        await using var database = await TestDatabase.CreateAsync(StoreKind.Postgres);
        string clientId;
        await using (var old = (PostgresTokenStore)database.OpenStore())
        {
            Assert.Equal(1, (await old.MigrateToAsync(1)).CurrentVersion);
            var created = await SecurityProfiles.CreateAsync(old, new ProfileRequest(
                "Old app", ["https://app.example/cb"], ["videocentral::reporting"], null, null, false, null), TimeProvider.System, CancellationToken.None);
            clientId = created.Value!.ClientId;
        }

        await using var upgraded = database.OpenStore();
        var status = await upgraded.MigrateAsync(CancellationToken.None);

        Assert.True(status.IsCurrent);
        Assert.Equal(PostgresMigrations.LatestVersion, (await upgraded.GetSchemaStatusAsync(CancellationToken.None)).CurrentVersion);
        var profile = await upgraded.FindProfileAsync(clientId, CancellationToken.None);
        Assert.NotNull(profile);
        Assert.Contains("videocentral::reporting", profile.RegisteredScopes);
        await using var connection = database.OpenPostgres();
        await using var index = new NpgsqlCommand("SELECT count(*) FROM pg_indexes WHERE indexname = 'authorization_codes_by_expiry'", connection);
        Assert.Equal(1L, await index.ExecuteScalarAsync());
    }

    [PostgresFact]
    public async Task Every_session_commits_synchronously_even_where_the_database_defaults_to_asynchronous_commits()
    {
        // With synchronous_commit=off PostgreSQL answers COMMIT before its WAL record is flushed, so a crash of the
        // database machine loses transactions whose tokens were already sent. An operator's database default must not
        // turn that on behind Tollgate's back: its sessions set it back to on (only its own connection string may say otherwise).
        await using var database = await TestDatabase.CreateAsync(StoreKind.Postgres);
        await using (var admin = database.OpenPostgres())
        await using (var asynchronous = new NpgsqlCommand($"ALTER DATABASE \"{admin.Database}\" SET synchronous_commit = off", admin))
        {
            await asynchronous.ExecuteNonQueryAsync();
        }
        await using var store = (PostgresTokenStore)database.OpenStore();

        await using (var other = database.OpenPostgres())
        {
            Assert.Equal("off", await SynchronousCommitAsync(other)); // what any other session gets now
        }
        await using var session = await store.DataSource.OpenConnectionAsync();
        Assert.Equal("on", await SynchronousCommitAsync(session));
    }

    private static async Task<string?> SynchronousCommitAsync(NpgsqlConnection session)
    {
        await using var show = new NpgsqlCommand("SHOW synchronous_commit", session);
        return (string?)await show.ExecuteScalarAsync();
    }

    [PostgresFact]
    public async Task Nodes_starting_at_once_migrate_exactly_once_and_the_others_wait_for_it()
    {
        await using var database = await TestDatabase.CreateAsync(StoreKind.Postgres);
        var stores = Enumerable.Range(0, 6).Select(_ => database.OpenStore()).ToList();

        var statuses = await Task.WhenAll(stores.Select(s => Task.Run(() => s.MigrateAsync(CancellationToken.None))));
        // Every node then agrees on one access-token key, whoever created it.
        var keys = await Task.WhenAll(stores.Select(s => Task.Run(() =>
            s.GetOrCreateAccessTokenKeysAsync(Server.Crypto.Secrets.NewAccessTokenKey(), DateTimeOffset.UtcNow, CancellationToken.None))));

        Assert.All(statuses, s => Assert.True(s.IsCurrent));
        Assert.Single(keys.Select(k => Convert.ToHexString(k.Keys[k.CurrentKeyId])).Distinct());
        await using var connection = database.OpenPostgres();
        await using var versions = new NpgsqlCommand("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version", connection);
        Assert.Equal(string.Join(',', Enumerable.Range(1, PostgresMigrations.LatestVersion)), await versions.ExecuteScalarAsync());
        foreach (var store in stores)
        {
            await store.DisposeAsync();
        }
    }

    [PostgresFact]
    public async Task A_database_from_a_newer_tollgate_is_refused_with_a_clear_reason()
    {
        await using var database = await TestDatabase.CreateAsync(StoreKind.Postgres);
        await using (var store = database.OpenStore())
        {
            await store.MigrateAsync(CancellationToken.None);
        }
        await using (var connection = database.OpenPostgres())
        {
            await using var future = new NpgsqlCommand($"INSERT INTO schema_version (version) VALUES ({PostgresMigrations.LatestVersion + 1})", connection);
            await future.ExecuteNonQueryAsync();
        }
        await using var newer = database.OpenStore();

        var error = await Assert.ThrowsAsync<StoreSchemaException>(() => newer.MigrateAsync(CancellationToken.None));

        Assert.Contains("newer than this tollgate", error.Message, StringComparison.Ordinal);
    }

    [PostgresFact]
    public async Task While_another_node_prunes_a_prune_run_skips_instead_of_waiting()
    {
        await using var database = await TestDatabase.CreateAsync(StoreKind.Postgres);
        await using var store = database.OpenStore();
        await store.MigrateAsync(CancellationToken.None);
        var policy = new PrunePolicy(DateTimeOffset.UtcNow, TimeSpan.FromDays(1), 100);

        await using (var otherNode = database.OpenPostgres())
        {
            await using var hold = new NpgsqlCommand("SELECT pg_advisory_lock(@k)", otherNode);
            hold.Parameters.AddWithValue("k", PostgresTokenStore.PruneLockKey);
            await hold.ExecuteNonQueryAsync();

            Assert.True((await store.PruneAsync(policy, null, CancellationToken.None)).Skipped);

            // Unlock explicitly: closing the connection releases the lock only once the server's backend has
            // exited, which may be after the next prune asked for it (a flaky test otherwise).
            await using var release = new NpgsqlCommand("SELECT pg_advisory_unlock(@k)", otherNode);
            release.Parameters.AddWithValue("k", PostgresTokenStore.PruneLockKey);
            await release.ExecuteNonQueryAsync();
        }

        Assert.False((await store.PruneAsync(policy, null, CancellationToken.None)).Skipped);
    }

    [PostgresFact]
    public async Task Connections_dropped_by_the_server_are_retried_inside_the_store_not_surfaced()
    {
        await using var database = await TestDatabase.CreateAsync(StoreKind.Postgres);
        await using var store = database.OpenStore();
        await store.MigrateAsync(CancellationToken.None);
        var user = await Users.CreateAsync(store, "ana@example.com", "Ana", "correct horse battery", TimeProvider.System, CancellationToken.None);
        // Warm the pool with several connections, then have the server terminate every one of them (a failover, a restart).
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => store.FindUserByEmailAsync("ana@example.com", CancellationToken.None))));
        await using (var admin = database.OpenPostgres())
        {
            await using var kill = new NpgsqlCommand(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tollgate'", admin);
            Assert.True((long)(await kill.ExecuteScalarAsync())! >= 1);
        }

        var found = await store.FindUserByEmailAsync("ana@example.com", CancellationToken.None);
        var created = await Users.CreateAsync(store, "ben@example.com", "Ben", "correct horse battery", TimeProvider.System, CancellationToken.None);

        Assert.Equal(user.Value!.UserId, found?.UserId);
        Assert.Null(created.Problem);
    }

    [PostgresFact]
    public async Task A_rotation_whose_connections_were_dropped_still_rotates_once_and_its_successor_works()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Postgres);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        // Warm the pool, then terminate every connection: the batch statement meets a dead connection and the
        // general path must finish the rotation (or recognise that the batch already committed it).
        var (other, otherTokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(other, otherTokens.RefreshToken)).Status);
        await using (var admin = host.Database.OpenPostgres())
        {
            await using var kill = new NpgsqlCommand(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tollgate'", admin);
            Assert.True((long)(await kill.ExecuteScalarAsync())! >= 1);
        }

        var rotated = await host.RefreshAsync(profile, tokens.RefreshToken);

        Assert.Equal(HttpStatusCode.OK, rotated.Status);
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(profile, rotated.RefreshToken)).Status);
    }

    [PostgresFact]
    public async Task Concurrent_rotations_on_one_node_share_statements_and_every_chain_stays_whole()
    {
        const int Chains = 32, Rotations = 25;
        await using var host = await TollgateHost.StartAsync(StoreKind.Postgres);
        var chains = new List<(CreatedProfile Profile, TokenReply Tokens)>();
        for (int i = 0; i < Chains; i++)
        {
            chains.Add(await host.AuthorizeAsync(refreshPolicy: "rotate"));
        }
        var store = (PostgresTokenStore)host.Store;
        var before = store.RotationBatches;

        string[] last = await Task.WhenAll(chains.Select(async chain =>
        {
            string token = chain.Tokens.RefreshToken!;
            for (int i = 0; i < Rotations; i++)
            {
                var reply = await host.RefreshAsync(chain.Profile, token);
                Assert.Equal(HttpStatusCode.OK, reply.Status);
                token = reply.RefreshToken!;
            }
            return token;
        }));
        var after = store.RotationBatches;

        Assert.Equal(Chains * Rotations, after.Items - before.Items);
        Assert.True(after.Batches - before.Batches < after.Items - before.Items,
            $"{after.Batches - before.Batches} statements for {after.Items - before.Items} rotations: no two ever shared one");
        await using (var connection = host.Database.OpenPostgres())
        await using (var count = new NpgsqlCommand(
            "SELECT count(*), count(*) FILTER (WHERE consumed_at IS NOT NULL) FROM refresh_tokens", connection))
        await using (var rows = await count.ExecuteReaderAsync())
        {
            // Every rotation consumed one token and added one: nothing lost, nothing doubled.
            Assert.True(await rows.ReadAsync());
            Assert.Equal(Chains * (Rotations + 1), rows.GetInt64(0));
            Assert.Equal(Chains * Rotations, rows.GetInt64(1));
        }
        for (int i = 0; i < Chains; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(chains[i].Profile, last[i])).Status);
        }
    }

    [PostgresFact]
    public async Task Concurrent_code_exchanges_on_one_node_share_statements_and_redeem_every_code_exactly_once()
    {
        const int Codes = 32;
        await using var host = await TollgateHost.StartAsync(StoreKind.Postgres);
        var user = await host.CreateUserAsync();
        var profile = await host.CreateProfileAsync();
        // Each code bound to a PKCE challenge of its own: a claim that matched another request's terms would be refused.
        var codes = new List<(string Code, string Verifier)>();
        for (int i = 0; i < Codes; i++)
        {
            string verifier = Pkce.NewVerifier();
            codes.Add((await host.IssueCodeAsync(profile, user, "profile", Pkce.S256(verifier), "S256"), verifier));
        }
        Task<TokenReply> Exchange((string Code, string Verifier) code) => host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "authorization_code"), ("code", code.Code), ("redirect_uri", TollgateHost.ReturnUrl), ("code_verifier", code.Verifier)));
        var store = (PostgresTokenStore)host.Store;
        var before = store.RedemptionBatches;

        // Whether requests arrive while statements are in flight is up to the scheduler, and on a slow machine 32
        // exchanges may each find a free slot. So the test makes the moment happen: it holds the codes table, the first
        // claims wait on it in both slots, and the others queue behind them; released, the queued ones must share statements.
        Task<TokenReply[]> exchanges;
        await using (var holder = host.Database.OpenPostgres())
        await using (var hold = await holder.BeginTransactionAsync())
        {
            await using (var lockCodes = new NpgsqlCommand("LOCK TABLE authorization_codes IN ACCESS EXCLUSIVE MODE", holder, hold))
            {
                await lockCodes.ExecuteNonQueryAsync();
            }
            exchanges = Task.WhenAll(codes.Select(Exchange));
            // Well inside the store's 3 s lock_timeout, which the two waiting claims are subject to. On a loaded machine
            // not every request gets through HTTP that soon (CI once saw 29 of 30 queued); two queued can share already.
            var deadline = DateTime.UtcNow.AddSeconds(2);
            while (store.RedemptionsWaiting < Codes - 2 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(5);
            }
            Assert.True(store.RedemptionsWaiting >= 2, $"only {store.RedemptionsWaiting} exchanges queued behind the held table in 2 s");
            await hold.RollbackAsync();
        }
        var first = await exchanges;
        var after = store.RedemptionBatches;
        var refreshed = await Task.WhenAll(first.Select(reply => host.RefreshAsync(profile, reply.RefreshToken)));
        var replayed = await Task.WhenAll(codes.Select(Exchange));

        Assert.All(first, reply => Assert.Equal(HttpStatusCode.OK, reply.Status));
        Assert.Equal(Codes, first.Select(reply => reply.RefreshToken).Distinct().Count());
        Assert.All(refreshed, reply => Assert.Equal(HttpStatusCode.OK, reply.Status));
        Assert.All(replayed, reply => Assert.Equal("invalid_grant", reply.Error));
        Assert.Equal(Codes, after.Items - before.Items);
        Assert.True(after.Batches - before.Batches < after.Items - before.Items,
            $"{after.Batches - before.Batches} statements for {after.Items - before.Items} exchanges: no two ever shared one");
    }

    [PostgresFact]
    public async Task A_code_is_claimed_in_one_statement_exactly_when_the_terms_admit_it()
    {
        // The statement that claims a code checks RedemptionTerms in SQL. If it ever admitted a code the C# check refuses,
        // an expired code, a wrong redirect URI or a missing verifier would be redeemed; if it refused one the check
        // admits, the request would be answered with a refusal it does not deserve. Every combination, through both
        // forms of the statement; each must also hand back the code as it was, or nothing for a code that does not exist.
        await using var host = await TollgateHost.StartAsync(StoreKind.Postgres);
        var store = (PostgresTokenStore)host.Store;
        var user = await host.CreateUserAsync();
        long own = (await store.FindProfileAsync((await host.CreateProfileAsync()).ClientId, CancellationToken.None))!.RowId;
        long other = (await store.FindProfileAsync((await host.CreateProfileAsync()).ClientId, CancellationToken.None))!.RowId;
        long userRow = (await store.FindUserByEmailAsync(user.Email, CancellationToken.None))!.RowId;
        var now = DateTimeOffset.FromUnixTimeMilliseconds(host.Clock.GetUtcNow().ToUnixTimeMilliseconds() + 1).AddTicks(5_000); // between two milliseconds
        string verifier = Pkce.NewVerifier(), wrongVerifier = Pkce.NewVerifier();
        (string? Challenge, string? Method)[] challenges =
            [(null, null), (verifier, "plain"), (verifier, null), (Pkce.S256(verifier), "S256"), (Pkce.S256(wrongVerifier), "S256")];
        DateTimeOffset[] expiries = [now.AddMinutes(5), now.AddMilliseconds(1), now, now.AddMilliseconds(-1)];
        RedemptionTerms[] requests =
        [
            .. new[] { null, verifier, wrongVerifier, Pkce.S256(verifier) }.Select(v => new RedemptionTerms(TollgateHost.ReturnUrl, v, now)),
            new(TollgateHost.ReturnUrl.ToUpperInvariant(), null, now),
            new(TollgateHost.ReturnUrl + "/", verifier, now),
        ];

        async Task<List<(PostgresTokenStore.FreshRedemption Redemption, AuthorizationCode? Code)>> IssueEveryCombinationAsync()
        {
            var cases = new List<(PostgresTokenStore.FreshRedemption, AuthorizationCode?)>();
            foreach (var (challenge, method) in challenges)
            {
                foreach (var expires in expiries)
                {
                    foreach (long profile in new[] { own, other })
                    {
                        foreach (var terms in requests)
                        {
                            var codeHash = Secrets.StoreKey(Secrets.NewAuthorizationCode(now));
                            await store.InsertCodeAsync(new NewCode(
                                codeHash, profile, userRow, TollgateHost.ReturnUrl, "profile", challenge, method, now.AddMinutes(-1), expires), CancellationToken.None);
                            var stored = new AuthorizationCode(profile, user.UserId, TollgateHost.ReturnUrl, "profile", challenge, method,
                                DateTimeOffset.FromUnixTimeMilliseconds(expires.ToUnixTimeMilliseconds()), Redeemed: false);
                            cases.Add((new(codeHash, Secrets.StoreKey(Secrets.NewRefreshToken(now)), own, terms), stored));
                        }
                    }
                }
            }
            var neverIssued = Secrets.StoreKey(Secrets.NewAuthorizationCode(now));
            cases.Add((new(neverIssued, Secrets.StoreKey(Secrets.NewRefreshToken(now)), own, requests[0]), null));
            return cases;
        }

        var batched = await IssueEveryCombinationAsync();
        var batchResults = await store.RedeemFreshCodesAsync([.. batched.Select(c => c.Redemption)], CancellationToken.None);
        var alone = await IssueEveryCombinationAsync();
        var aloneResults = new List<PostgresTokenStore.CodeClaim?>();
        foreach (var (redemption, _) in alone)
        {
            aloneResults.Add(await store.RedeemFreshCodeAsync(redemption, CancellationToken.None));
        }

        foreach (var (cases, results) in new[] { (batched, batchResults.ToList()), (alone, aloneResults) })
        {
            Assert.Contains(results, r => r?.GrantId is not null);
            Assert.Contains(results, r => r?.GrantId is null);
            for (int i = 0; i < cases.Count; i++)
            {
                var (redemption, code) = cases[i];
                var claim = Assert.IsType<PostgresTokenStore.CodeClaim>(results[i]);
                Assert.Equal(code, claim.Code);
                if (code is null)
                {
                    Assert.Null(claim.GrantId);
                    continue;
                }
                bool admitted = code.ProfileRowId == redemption.ProfileRowId && redemption.Terms.Admits(code);
                string which = $"code {code.CodeChallenge ?? "-"}/{code.CodeChallengeMethod ?? "-"} expiring {code.ExpiresAt:HH:mm:ss.fff} of " +
                    $"{(code.ProfileRowId == own ? "this" : "another")} client; request {redemption.Terms.RedirectUri} verifier " +
                    $"{redemption.Terms.CodeVerifier ?? "-"} at {now:HH:mm:ss.fffffff}";
                Assert.True(admitted == claim.GrantId is not null, $"{(admitted ? "refused" : "claimed")}: {which}");
                if (claim.GrantId is long grantId)
                {
                    Assert.True(await store.IsGrantActiveAsync(grantId, CancellationToken.None));
                }
            }
        }
    }

    [PostgresFact]
    public async Task A_rotation_whose_token_another_transaction_holds_waits_alone_and_the_other_rotations_go_through()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Postgres);
        var (held, heldTokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        var others = new List<(CreatedProfile Profile, TokenReply Tokens)>();
        for (int i = 0; i < 4; i++)
        {
            others.Add(await host.AuthorizeAsync(refreshPolicy: "rotate"));
        }
        await using var holder = host.Database.OpenPostgres();
        await using var watcher = host.Database.OpenPostgres();
        await using var transaction = await HoldRowsAsync(holder, RefreshTokensOfClient, held.ClientId);

        var (waiter, othersRotated, heldWaitedMeanwhile, heldRotated) = await WhileRowsAreHeldAsync(
            watcher, transaction, () => host.RefreshAsync(held, heldTokens.RefreshToken),
            others.Select(o => (Func<Task<TokenReply>>)(() => host.RefreshAsync(o.Profile, o.Tokens.RefreshToken))));

        // The request waits alone (a batch of one, or the general path after a batch skipped its row): a batch of several
        // that waited there would hold up every rotation that shared it, and nothing else may stall behind it.
        Assert.DoesNotContain("unnest", waiter);
        Assert.All(othersRotated, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.True(heldWaitedMeanwhile);
        Assert.Equal(HttpStatusCode.OK, heldRotated.Status);
        Assert.Equal(HttpStatusCode.OK, (await host.RefreshAsync(held, heldRotated.RefreshToken)).Status);
    }

    [PostgresFact]
    public async Task A_code_exchange_whose_code_another_transaction_holds_waits_alone_and_the_other_exchanges_go_through()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Postgres);
        var user = await host.CreateUserAsync();
        var held = await host.CreateProfileAsync();
        string heldCode = await host.IssueCodeAsync(held, user);
        var others = new List<(CreatedProfile Profile, string Code)>();
        for (int i = 0; i < 4; i++)
        {
            var profile = await host.CreateProfileAsync();
            others.Add((profile, await host.IssueCodeAsync(profile, user)));
        }
        Task<TokenReply> Exchange(CreatedProfile profile, string code) => host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl)));
        await using var holder = host.Database.OpenPostgres();
        await using var watcher = host.Database.OpenPostgres();
        await using var transaction = await HoldRowsAsync(holder, CodesOfClient, held.ClientId);

        var (waiter, othersExchanged, heldWaitedMeanwhile, heldExchanged) = await WhileRowsAreHeldAsync(
            watcher, transaction, () => Exchange(held, heldCode), others.Select(o => (Func<Task<TokenReply>>)(() => Exchange(o.Profile, o.Code))));

        Assert.DoesNotContain("unnest", waiter);
        Assert.All(othersExchanged, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.True(heldWaitedMeanwhile);
        Assert.Equal(HttpStatusCode.OK, heldExchanged.Status);
        Assert.Equal(HttpStatusCode.BadRequest, (await Exchange(held, heldCode)).Status);
    }

    [PostgresFact]
    public async Task A_rotation_that_waits_out_the_lock_timeout_is_answered_503_after_one_wait_not_two()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Postgres);
        var (held, heldTokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        await using var holder = host.Database.OpenPostgres();
        await using var transaction = await HoldRowsAsync(holder, RefreshTokensOfClient, held.ClientId);
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var refused = await host.RefreshAsync(held, heldTokens.RefreshToken);
        var waited = clock.Elapsed;

        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.Status);
        Assert.Equal("temporarily_unavailable", refused.Error);
        Assert.NotNull(refused.Headers.RetryAfter);
        // lock_timeout is 3 s. Its batch of one waited it out; the general path must not wait it out a second time.
        Assert.InRange(waited, TimeSpan.FromSeconds(2.5), TimeSpan.FromSeconds(5.5));
    }

    [PostgresFact]
    public async Task A_batch_of_rotations_skips_a_token_another_transaction_holds_and_rotates_the_rest_without_waiting()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Postgres);
        var (held, heldTokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        var (free, freeTokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");
        var store = (PostgresTokenStore)host.Store;
        long at = host.Clock.GetUtcNow().ToUnixTimeMilliseconds();
        async Task<PostgresTokenStore.LiveRotation> RotationAsync(CreatedProfile profile, string token) => new(
            Secrets.StoreKey(token), Secrets.StoreKey(Secrets.NewRefreshToken(host.Clock.GetUtcNow())),
            (await store.FindProfileAsync(profile.ClientId, CancellationToken.None))!.RowId, at);
        var batch = new[] { await RotationAsync(held, heldTokens.RefreshToken!), await RotationAsync(free, freeTokens.RefreshToken!) };
        await using var holder = host.Database.OpenPostgres();
        await using var transaction = await HoldRowsAsync(holder, RefreshTokensOfClient, held.ClientId);

        // lock_timeout is 3 s: a batch that waited for the held row would take that long and then fail whole.
        var results = await store.RotateLiveTokensAsync(batch, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(2));

        Assert.Null(results[0]);
        Assert.NotNull(results[1]);
    }

    [PostgresFact]
    public async Task A_batch_of_code_redemptions_skips_a_code_another_transaction_holds_and_redeems_the_rest_without_waiting()
    {
        await using var host = await TollgateHost.StartAsync(StoreKind.Postgres);
        var user = await host.CreateUserAsync();
        var held = await host.CreateProfileAsync();
        var free = await host.CreateProfileAsync();
        var store = (PostgresTokenStore)host.Store;
        var terms = new RedemptionTerms(TollgateHost.ReturnUrl, null, host.Clock.GetUtcNow());
        async Task<PostgresTokenStore.FreshRedemption> RedemptionAsync(CreatedProfile profile) => new(
            Secrets.StoreKey(await host.IssueCodeAsync(profile, user)), Secrets.StoreKey(Secrets.NewRefreshToken(host.Clock.GetUtcNow())),
            (await store.FindProfileAsync(profile.ClientId, CancellationToken.None))!.RowId, terms);
        var batch = new[] { await RedemptionAsync(held), await RedemptionAsync(free) };
        await using var holder = host.Database.OpenPostgres();
        await using var transaction = await HoldRowsAsync(holder, CodesOfClient, held.ClientId);

        var results = await store.RedeemFreshCodesAsync(batch, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(2));

        Assert.Null(results[0]!.GrantId);
        Assert.NotNull(results[0]!.Code); // skipped, not unknown: the caller goes on to wait for the row, not to refuse
        Assert.NotNull(results[1]!.GrantId);
    }

    /// <summary>
    /// Sends <paramref name="heldRequest"/>, waits until a session waits on the held rows, sends <paramref name="others"/>
    /// one after another, then ends the hold (changing nothing) and lets the held request finish.
    /// </summary>
    private static async Task<(string Waiter, List<TokenReply> Others, bool HeldWaitedMeanwhile, TokenReply Held)> WhileRowsAreHeldAsync(
        NpgsqlConnection watcher, NpgsqlTransaction hold, Func<Task<TokenReply>> heldRequest, IEnumerable<Func<Task<TokenReply>>> others)
    {
        var waiting = heldRequest();
        string waiter = await LockWaiterAsync(watcher);
        var answered = new List<TokenReply>();
        foreach (var other in others)
        {
            answered.Add(await other());
        }
        bool waitedMeanwhile = !waiting.IsCompleted;
        await hold.CommitAsync();
        return (waiter, answered, waitedMeanwhile, await waiting);
    }

    /// <summary>For <see cref="HoldRowsAsync"/>: every refresh token of client <c>@c</c>.</summary>
    private const string RefreshTokensOfClient = """
        SELECT t.token_hash FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id JOIN profiles p ON p.id = g.profile_id
        WHERE p.client_id = @c FOR UPDATE OF t
        """;

    /// <summary>For <see cref="HoldRowsAsync"/>: every authorization code of client <c>@c</c>.</summary>
    private const string CodesOfClient = """
        SELECT c.code_hash FROM authorization_codes c JOIN profiles p ON p.id = c.profile_id
        WHERE p.client_id = @c FOR UPDATE OF c
        """;

    /// <summary>Locks the rows <paramref name="sql"/> selects for client <paramref name="clientId"/> until the returned transaction ends.</summary>
    private static async Task<NpgsqlTransaction> HoldRowsAsync(NpgsqlConnection holder, string sql, string clientId)
    {
        var transaction = await holder.BeginTransactionAsync();
        await using var hold = new NpgsqlCommand(sql, holder, transaction);
        hold.Parameters.AddWithValue("c", clientId);
        await using var rows = await hold.ExecuteReaderAsync();
        Assert.True(await rows.ReadAsync());
        return transaction;
    }

    /// <summary>The statement of the one session in this database that waits on a lock, once there is one.</summary>
    private static async Task<string> LockWaiterAsync(NpgsqlConnection watcher)
    {
        var deadline = DateTime.UtcNow.AddSeconds(2.5); // the store gives up on a row lock after 3 s (lock_timeout)
        while (DateTime.UtcNow < deadline)
        {
            await using var find = new NpgsqlCommand(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'", watcher);
            if (await find.ExecuteScalarAsync() is string query)
            {
                return query;
            }
            await Task.Delay(10);
        }
        throw new TimeoutException("no session waited on the held row lock");
    }

    [PostgresFact]
    public async Task A_pool_larger_than_postgres_admits_is_named_at_start_and_a_small_one_is_not()
    {
        await using var database = await TestDatabase.CreateAsync(StoreKind.Postgres);
        string location = database.Location["postgres:".Length..];
        await using var oversized = PostgresTokenStore.Open(location + ";Maximum Pool Size=1000");
        await using var modest = PostgresTokenStore.Open(location + ";Maximum Pool Size=10");

        string? warning = (await oversized.DescribeRisksAsync(CancellationToken.None)).ConnectionBudget;

        Assert.NotNull(warning);
        Assert.Contains("Maximum Pool Size 1000", warning, StringComparison.Ordinal);
        Assert.Contains("53300", warning, StringComparison.Ordinal);
        Assert.Null((await modest.DescribeRisksAsync(CancellationToken.None)).ConnectionBudget);
    }
}
