using System.Runtime.Versioning;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Client.Tests;

public sealed class FileTokenStoreTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static StoredCredentials Sample(string refreshToken = "Atzr|IwEBsecret-refresh") => new()
    {
        TokenEndpoint = new Uri("http://127.0.0.1:5000/auth/o2/token"),
        ClientId = "amzn1.application-oa2-client.0123",
        ClientSecret = "very-secret",
        RefreshToken = refreshToken,
        AccessToken = "Atza|IwEBaccess",
        AccessTokenExpiresAt = DateTimeOffset.FromUnixTimeSeconds(2_000_000_000),
        Scope = "profile",
    };

    [Fact]
    public async Task Credentials_written_are_read_back_unchanged()
    {
        var store = new FileTokenStore(_dir.File("nested/credentials"));

        await store.WriteAsync(Sample());

        Assert.Equal(Sample(), await new FileTokenStore(store.Path).ReadAsync());
    }

    [PowerCutFact]
    public async Task A_refresh_token_survives_a_power_cut_the_moment_its_write_returns()
    {
        // On a disk that keeps every write in a volatile cache until it is fsynced (and drops what was not at the cut),
        // a rotated refresh token the store said it wrote must be there after the power goes, and whole: the old
        // token is already spent at the server, so a file that lost the new one, or was torn, loses the login. The
        // store's directory is new, and a new name lasts only once its parent directory is synced: without that the
        // token was lost with the directory.
        await using var disk = await PowerCutDisk.MountAsync(_dir.Path);
        var store = new FileTokenStore(Path.Combine(disk.MountPoint, "tollgate", "credentials"));
        await store.WriteAsync(Sample("Atzr|first"));
        await store.WriteAsync(Sample("Atzr|rotated"));

        await disk.CutPowerAsync();
        await disk.UnmountAsync();

        var survivor = await new FileTokenStore(Path.Combine(disk.Backing, "tollgate", "credentials")).ReadAsync();
        Assert.Equal(Sample("Atzr|rotated"), survivor);
    }

    [Fact]
    public async Task An_empty_store_reads_as_nothing()
    {
        Assert.Null(await new FileTokenStore(_dir.File("credentials")).ReadAsync());
        Assert.False(await new FileTokenStore(_dir.File("credentials")).DeleteAsync());
    }

    [Fact]
    [UnsupportedOSPlatform("windows")]
    public async Task The_store_and_key_files_are_readable_by_their_owner_only()
    {
        var store = new FileTokenStore(_dir.File("new-dir/credentials"));

        await store.WriteAsync(Sample());
        await store.WriteAsync(Sample("Atzr|second"));

        const UnixFileMode ownerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        Assert.Equal(ownerOnly, File.GetUnixFileMode(store.Path));
        Assert.Equal(ownerOnly, File.GetUnixFileMode(store.KeyPath));
        Assert.Equal(ownerOnly | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.GetDirectoryName(store.Path)!));
    }

    [Fact]
    public async Task Secrets_are_encrypted_at_rest()
    {
        var store = new FileTokenStore(_dir.File("credentials"));

        await store.WriteAsync(Sample());

        var text = await File.ReadAllTextAsync(store.Path);
        Assert.DoesNotContain("Atzr|", text, StringComparison.Ordinal);
        Assert.DoesNotContain("IwEB", text, StringComparison.Ordinal);
        Assert.DoesNotContain("very-secret", text, StringComparison.Ordinal);
        Assert.Contains("tollgate-credentials", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_replace_leaves_no_temporary_files_behind()
    {
        var store = new FileTokenStore(_dir.File("credentials"));

        for (var i = 0; i < 5; i++)
            await store.WriteAsync(Sample($"Atzr|{i}"));

        Assert.Equal(["credentials", "credentials.key"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal("Atzr|4", (await store.ReadAsync())!.RefreshToken);
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("{\"some\":\"other tool's json\"}")]
    [InlineData("")]
    public async Task A_foreign_file_gives_a_clear_error_and_is_not_overwritten(string content)
    {
        var path = _dir.File("credentials");
        await File.WriteAllTextAsync(path, content);
        var store = new FileTokenStore(path);

        var read = await Assert.ThrowsAsync<TokenStoreException>(async () => await store.ReadAsync());
        var write = await Assert.ThrowsAsync<TokenStoreException>(async () => await store.WriteAsync(Sample()));
        var delete = await Assert.ThrowsAsync<TokenStoreException>(async () => await store.DeleteAsync());

        Assert.Contains("not a Tollgate credentials file", read.Message, StringComparison.Ordinal);
        Assert.Contains(path, write.Message, StringComparison.Ordinal);
        Assert.NotNull(delete);
        Assert.Equal(content, await File.ReadAllTextAsync(path));
    }

    [Fact]
    public async Task A_tampered_file_fails_authentication_and_is_not_overwritten()
    {
        var store = new FileTokenStore(_dir.File("credentials"));
        await store.WriteAsync(Sample());
        var text = await File.ReadAllTextAsync(store.Path);
        var start = text.IndexOf("\"ciphertext\":\"", StringComparison.Ordinal) + 14;
        var tampered = text[..start] + (text[start] == 'A' ? 'B' : 'A') + text[(start + 1)..];
        await File.WriteAllTextAsync(store.Path, tampered);

        var read = await Assert.ThrowsAsync<TokenStoreException>(async () => await store.ReadAsync());
        await Assert.ThrowsAsync<TokenStoreException>(async () => await store.WriteAsync(Sample("Atzr|new")));

        Assert.Contains("corrupt", read.Message, StringComparison.Ordinal);
        Assert.Equal(tampered, await File.ReadAllTextAsync(store.Path));
    }

    [Fact]
    public async Task A_file_written_with_another_key_is_reported_as_such()
    {
        var store = new FileTokenStore(_dir.File("credentials"));
        await store.WriteAsync(Sample());
        var other = new FileTokenStore(_dir.File("other"));
        await other.WriteAsync(Sample());
        File.Copy(other.KeyPath, store.KeyPath, overwrite: true);

        var read = await Assert.ThrowsAsync<TokenStoreException>(async () => await store.ReadAsync());

        Assert.Contains("another key", read.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_key_file_is_reported_and_no_new_key_replaces_it()
    {
        var store = new FileTokenStore(_dir.File("credentials"));
        await store.WriteAsync(Sample());
        var before = await File.ReadAllBytesAsync(store.Path);
        File.Delete(store.KeyPath);

        var read = await Assert.ThrowsAsync<TokenStoreException>(async () => await store.ReadAsync());
        await Assert.ThrowsAsync<TokenStoreException>(async () => await store.WriteAsync(Sample()));

        Assert.Contains("key file", read.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(store.KeyPath));
        Assert.Equal(before, await File.ReadAllBytesAsync(store.Path));
    }

    [Fact]
    public async Task A_key_file_kept_elsewhere_is_used()
    {
        var keyPath = _dir.File("keys/tollgate.key");
        var store = new FileTokenStore(_dir.File("credentials"), keyPath);

        await store.WriteAsync(Sample());

        Assert.True(File.Exists(keyPath));
        Assert.False(File.Exists(_dir.File("credentials.key")));
        Assert.Equal(32, (await File.ReadAllBytesAsync(keyPath)).Length);
        Assert.Equal(Sample(), await new FileTokenStore(store.Path, keyPath).ReadAsync());
    }

    [Fact]
    public async Task Logout_removes_the_credentials()
    {
        var store = new FileTokenStore(_dir.File("credentials"));
        await store.WriteAsync(Sample());

        Assert.True(await store.DeleteAsync());

        Assert.Null(await store.ReadAsync());
    }

    [Fact]
    public async Task The_lock_is_exclusive_between_independent_handles_and_times_out()
    {
        var path = _dir.File("credentials");
        await using (await new FileTokenStore(path).AcquireLockAsync(TimeSpan.FromSeconds(1)))
        {
            await Assert.ThrowsAsync<TimeoutException>(async () => await new FileTokenStore(path).AcquireLockAsync(TimeSpan.FromMilliseconds(200)));
        }
        await using (await new FileTokenStore(path).AcquireLockAsync(TimeSpan.FromMilliseconds(200)))
        {
        }
    }

    [Fact]
    public void The_default_path_follows_TOLLGATE_STORE()
    {
        // Only read here: the variable is process-wide, so the test asserts the rule without setting it.
        var env = Environment.GetEnvironmentVariable("TOLLGATE_STORE");
        if (!string.IsNullOrEmpty(env))
            Assert.Equal(env, FileTokenStore.DefaultPath);
        else
            Assert.EndsWith(Path.Combine("tollgate", "credentials"), FileTokenStore.DefaultPath, StringComparison.Ordinal);
    }
}
