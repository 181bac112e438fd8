using Microsoft.Data.Sqlite;
using Tollgate.Durability;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Hardening;

/// <summary>
/// The power-cut disk behind <c>CliTests.Every_token_the_server_answered_with_survives_a_power_cut</c> must lose what
/// a real power cut loses, or that test could not fail. These pin its model with SQLite itself, outside Tollgate.
/// </summary>
public sealed class PowerCutDiskTests : IDisposable
{
    private readonly string _directory = TempDirectory.Create();

    public void Dispose() => TempDirectory.Delete(_directory);

    [PowerCutFact]
    public async Task A_commit_that_was_fsynced_survives_the_cut_and_one_that_was_not_is_lost()
    {
        await using var disk = await PowerCutDisk.MountAsync(_directory);
        using (var connection = Open(Path.Combine(disk.MountPoint, "probe.db")))
        {
            Execute(connection, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (v TEXT)");
            Execute(connection, "INSERT INTO t VALUES ('synced')");
            // synchronous=OFF: SQLite commits into the WAL without an fsync, as a server that answered early would.
            Execute(connection, "PRAGMA synchronous = OFF; INSERT INTO t VALUES ('committed, not synced')");
            Assert.Equal(["synced", "committed, not synced"], Values(connection));

            string cut = await disk.CutPowerAsync();
            Assert.DoesNotContain("cut: 0 pages", cut, StringComparison.Ordinal);
            // The disk is gone: a write now fails with EIO instead of pretending.
            Assert.Throws<SqliteException>(() => Execute(connection, "PRAGMA synchronous = FULL; INSERT INTO t VALUES ('after the cut')"));
        }
        SqliteConnection.ClearAllPools();
        await disk.UnmountAsync();

        using var survivor = Open(Path.Combine(disk.Backing, "probe.db"));
        Assert.Equal(["synced"], Values(survivor));
    }

    [PowerCutFact]
    public async Task Without_a_cut_unmounting_writes_everything_back_as_a_clean_shutdown_would()
    {
        await using var disk = await PowerCutDisk.MountAsync(_directory);
        string file = Path.Combine(disk.MountPoint, "plain.txt");
        await File.WriteAllTextAsync(file, "never fsynced, ");
        await File.AppendAllTextAsync(file, "then truncated and rewritten");
        using (var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite))
        {
            stream.SetLength(5);
        }
        await File.AppendAllTextAsync(file, "!");
        Assert.Equal("never!", await File.ReadAllTextAsync(file));
        Assert.Equal(0, new FileInfo(Path.Combine(disk.Backing, "plain.txt")).Length); // nothing reached the disk yet

        await disk.UnmountAsync();

        Assert.Equal("never!", await File.ReadAllTextAsync(Path.Combine(disk.Backing, "plain.txt")));
    }

    [PowerCutFact]
    public async Task A_new_or_replaced_name_lasts_only_once_its_directory_is_synced()
    {
        // fsync(2): syncing a file does not make the directory entry that names it durable; syncing the directory does.
        // A store that creates its directory or renames a file into place, and syncs only the file, loses it here.
        await using var disk = await PowerCutDisk.MountAsync(_directory);
        string directory = Path.Combine(disk.MountPoint, "d");
        Directory.CreateDirectory(directory);
        DurableDirectory.Sync(disk.MountPoint);
        WriteSynced(Path.Combine(directory, "kept"), "old");
        DurableDirectory.Sync(directory);

        WriteSynced(Path.Combine(directory, "unnamed"), "synced, in a directory that was not");
        WriteSynced(Path.Combine(directory, "replacement"), "new");
        File.Move(Path.Combine(directory, "replacement"), Path.Combine(directory, "kept"), overwrite: true);
        Directory.CreateDirectory(Path.Combine(directory, "new-directory"));
        DurableDirectory.Sync(Path.Combine(directory, "new-directory")); // its own entries, not its name in d
        Assert.Equal("new", await File.ReadAllTextAsync(Path.Combine(directory, "kept")));

        string cut = await disk.CutPowerAsync();
        await disk.UnmountAsync();

        Assert.Contains("4 directory changes undone", cut, StringComparison.Ordinal);
        string survivor = Path.Combine(disk.Backing, "d");
        Assert.Equal(["kept"], Directory.EnumerateFileSystemEntries(survivor).Select(e => Path.GetFileName(e)));
        Assert.Equal("old", await File.ReadAllTextAsync(Path.Combine(survivor, "kept")));
        Assert.Equal(["d"], Directory.EnumerateFileSystemEntries(disk.Backing).Select(e => Path.GetFileName(e))); // no stash left behind
    }

    [PowerCutFact]
    public async Task A_move_to_another_directory_lasts_in_each_directory_only_once_that_one_is_synced()
    {
        // A real cut can leave a file moved across directories under both names, or under neither (its old directory
        // synced, its new one not): the disk refuses such a rename as a move between file systems (EXDEV), so File.Move
        // links the new name and unlinks the old, one change to each directory, and each is undone alone.
        await using var disk = await PowerCutDisk.MountAsync(_directory);
        string[] directories = ["from1", "to1", "from2", "to2"];
        foreach (string d in directories)
        {
            Directory.CreateDirectory(Path.Combine(disk.MountPoint, d));
        }
        DurableDirectory.Sync(disk.MountPoint);
        WriteSynced(Path.Combine(disk.MountPoint, "from1", "a"), "Atzr|a");
        WriteSynced(Path.Combine(disk.MountPoint, "from2", "b"), "Atzr|b");
        DurableDirectory.Sync(Path.Combine(disk.MountPoint, "from1"));
        DurableDirectory.Sync(Path.Combine(disk.MountPoint, "from2"));

        File.Move(Path.Combine(disk.MountPoint, "from1", "a"), Path.Combine(disk.MountPoint, "to1", "a"));
        File.Move(Path.Combine(disk.MountPoint, "from2", "b"), Path.Combine(disk.MountPoint, "to2", "b"));
        Assert.Equal("Atzr|a", await File.ReadAllTextAsync(Path.Combine(disk.MountPoint, "to1", "a")));
        Assert.False(File.Exists(Path.Combine(disk.MountPoint, "from1", "a")));
        DurableDirectory.Sync(Path.Combine(disk.MountPoint, "to1"));   // a: the new name lasts, the old one comes back
        DurableDirectory.Sync(Path.Combine(disk.MountPoint, "from2")); // b: the old name is gone for good, the new one too

        await disk.CutPowerAsync();
        await disk.UnmountAsync();

        string[] Names(string d) => [.. Directory.EnumerateFiles(Path.Combine(disk.Backing, d)).Select(f => Path.GetFileName(f))];
        Assert.Equal(["a"], Names("from1"));
        Assert.Equal(["a"], Names("to1"));
        Assert.Equal("Atzr|a", await File.ReadAllTextAsync(Path.Combine(disk.Backing, "to1", "a")));
        Assert.Empty(Names("from2"));
        Assert.Empty(Names("to2"));
    }

    private static void WriteSynced(string path, string text)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        stream.Write(System.Text.Encoding.UTF8.GetBytes(text));
        stream.Flush(flushToDisk: true);
    }

    private static SqliteConnection Open(string path)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        connection.Open();
        return connection;
    }

    private static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static List<string> Values(SqliteConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT v FROM t ORDER BY rowid";
        using var reader = command.ExecuteReader();
        var values = new List<string>();
        while (reader.Read())
        {
            values.Add(reader.GetString(0));
        }
        return values;
    }
}
