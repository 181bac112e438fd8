using Npgsql;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Hardening;

/// <summary>
/// The suite's scratch PostgreSQL databases must not pile up on a developer's server run after run, and one run must
/// never drop a database another run is still using: <see cref="RunOwner"/> tells the two apart by an advisory lock
/// that lives exactly as long as the run's process.
/// </summary>
public sealed class ScratchDatabaseTests
{
    [PostgresFact]
    public async Task A_run_drops_the_databases_of_runs_that_are_gone_and_keeps_those_of_runs_still_alive()
    {
        await using var ours = await TestDatabase.CreateAsync(StoreKind.Postgres);
        long goneRun = RunOwner.NewKey(), aliveRun = RunOwner.NewKey();
        string gone = RunOwner.DatabaseName(goneRun), alive = RunOwner.DatabaseName(aliveRun);
        await using var admin = await TestDatabase.OpenAdminAsync();
        // Another run's process, alive: its session holds its lock for as long as the test needs it.
        await using var aliveSession = await TestDatabase.OpenAdminAsync();
        await ExecuteAsync(aliveSession, $"SELECT pg_advisory_lock({aliveRun})");
        await ExecuteAsync(admin, $"CREATE DATABASE \"{gone}\"");
        await ExecuteAsync(admin, $"CREATE DATABASE \"{alive}\"");
        try
        {
            await RunOwner.DropWhatDeadRunsLeftAsync();

            Assert.False(await ExistsAsync(admin, gone));
            Assert.True(await ExistsAsync(admin, alive));
            Assert.True(await ExistsAsync(admin, new NpgsqlConnectionStringBuilder(ours.PostgresConnectionString).Database!));
        }
        finally
        {
            await TestDatabase.DropAsync(admin, gone);
            await TestDatabase.DropAsync(admin, alive);
        }
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<bool> ExistsAsync(NpgsqlConnection connection, string database)
    {
        await using var command = new NpgsqlCommand("SELECT count(*) FROM pg_database WHERE datname = $1", connection)
        {
            Parameters = { new() { Value = database } },
        };
        return (long)(await command.ExecuteScalarAsync())! == 1;
    }
}
