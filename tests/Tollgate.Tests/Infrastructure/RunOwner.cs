using System.Globalization;
using System.Security.Cryptography;
using Npgsql;

namespace Tollgate.Tests.Infrastructure;

/// <summary>
/// Which test run each scratch PostgreSQL database belongs to, and whether that run is still alive, so that every run
/// drops what finished or killed runs left behind. A run cannot reliably drop its own last databases: the test platform
/// kills the test host moments after the last test, part-way through a DROP DATABASE (neither
/// <c>AppDomain.ProcessExit</c> nor xunit's framework disposal got one through; every full run left one or two
/// databases of about 8 MB, 112 of them on one developer's server), and a run killed outright leaves all of its own.
/// </summary>
/// <remarks>
/// Each run holds a session-level advisory lock on a random key, in the server's <c>postgres</c> database, for as long
/// as its process lives, and puts the key in the name of every database it creates. PostgreSQL releases the lock when
/// that session ends, however the process ended, so a key whose lock can be taken belongs to a run that is gone, on
/// whichever machine it ran: its databases are nobody's and can be dropped.
/// </remarks>
internal static class RunOwner
{
    private const string Prefix = "tollgate_test_";
    private static readonly Lock Gate = new();
    private static Task<long>? _key;

    /// <summary>
    /// The session holding this run's lock: open until the process ends, on purpose never disposed, and held in a field
    /// so that the collector cannot finalize its socket, which would end the session and let another run drop ours.
    /// </summary>
    private static NpgsqlConnection? _lockSession;

    /// <summary>
    /// This run's key: the first call takes the lock and drops what dead runs left. A claim that failed (PostgreSQL not
    /// up yet) is tried again by the next caller rather than failing every test after it.
    /// </summary>
    public static Task<long> KeyAsync()
    {
        lock (Gate)
        {
            return _key is { IsFaulted: false, IsCanceled: false } ? _key : _key = ClaimAsync();
        }
    }

    /// <summary><c>tollgate_test_KEY_RANDOM</c>: 63 characters, the longest name PostgreSQL keeps whole.</summary>
    public static string DatabaseName(long key) => $"{Prefix}{key:x16}_{Guid.NewGuid():N}";

    /// <summary>A random non-negative key (so that its 16 hex digits in a name parse back to it).</summary>
    internal static long NewKey() => BitConverter.ToInt64(RandomNumberGenerator.GetBytes(sizeof(long))) & long.MaxValue;

    private static async Task<long> ClaimAsync()
    {
        var session = await TestDatabase.OpenAdminAsync();
        long key;
        do
        {
            key = NewKey();
        }
        while (!await TryLockAsync(session, key));
        _lockSession = session;
        try
        {
            await DropWhatDeadRunsLeftAsync();
        }
        catch (NpgsqlException)
        {
            // Housekeeping: a leftover that cannot be dropped now is dropped by a later run, and fails no test here.
        }
        return key;
    }

    /// <summary>
    /// Drops every database named for a run whose lock is free. Its own session, not the lock's: a session's
    /// advisory locks are re-entrant, so from the lock's own session this run would look dead too.
    /// </summary>
    internal static async Task DropWhatDeadRunsLeftAsync()
    {
        await using var admin = await TestDatabase.OpenAdminAsync();
        var byRun = new Dictionary<long, List<string>>();
        await using (var list = new NpgsqlCommand(
            $"SELECT datname FROM pg_database WHERE datname ~ '^{Prefix}[0-9a-f]{{16}}_[0-9a-f]{{32}}$'", admin))
        await using (var reader = await list.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                string name = reader.GetString(0);
                long key = long.Parse(name.AsSpan(Prefix.Length, 16), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
                (byRun.TryGetValue(key, out var names) ? names : byRun[key] = []).Add(name);
            }
        }
        foreach (var (key, names) in byRun)
        {
            if (!await TryLockAsync(admin, key))
            {
                continue; // that run is alive
            }
            foreach (string name in names)
            {
                await TestDatabase.DropAsync(admin, name);
            }
            await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock($1)", admin) { Parameters = { new() { Value = key } } };
            await unlock.ExecuteNonQueryAsync();
        }
    }

    private static async Task<bool> TryLockAsync(NpgsqlConnection session, long key)
    {
        await using var command = new NpgsqlCommand("SELECT pg_try_advisory_lock($1)", session) { Parameters = { new() { Value = key } } };
        return (bool)(await command.ExecuteScalarAsync())!;
    }
}
