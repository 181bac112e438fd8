using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Tollgate.Durability;

namespace Tollgate.Client;

/// <summary>
/// A durable, encrypted file store for one set of <see cref="StoredCredentials"/>.
/// </summary>
/// <remarks>
/// <para>The file is replaced atomically: the new content is written to a temporary file in the same directory,
/// fsynced, renamed over the old file, and the directory is fsynced, so a crash at any point leaves either the old
/// or the new credentials, never a torn file or none.</para>
/// <para>The content is encrypted with AES-256-GCM (authenticated: any change to the file is detected) under a
/// 256-bit key kept in a separate key file (by default the store path plus <c>.key</c>), created with mode 0600 on
/// first use. Store, key and lock files are created with mode 0600 and a new directory with 0700.</para>
/// <para>A file that is not a Tollgate credentials file, is corrupt, or was written with another key raises a
/// <see cref="TokenStoreException"/> and is never overwritten or removed.</para>
/// <para>The cross-process lock is an advisory lock (<c>flock</c>) on <c>&lt;path&gt;.lock</c>, which the operating
/// system releases when its holder exits or is killed.</para>
/// </remarks>
public sealed class FileTokenStore : IRefreshTokenStore
{
    private const string Format = "tollgate-credentials";
    private const int FormatVersion = 1;
    private const int KeySize = 32;
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode OwnerOnlyDirectory = OwnerOnly | UnixFileMode.UserExecute;

    /// <summary>Creates a store at <paramref name="path"/>.</summary>
    /// <param name="path">The credentials file.</param>
    /// <param name="keyPath">The key file; <c>&lt;path&gt;.key</c> when <see langword="null"/>. Keep it apart from
    /// backups of the credentials file: the file is useless without it.</param>
    public FileTokenStore(string path, string? keyPath = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        Path = System.IO.Path.GetFullPath(path);
        KeyPath = System.IO.Path.GetFullPath(keyPath ?? Path + ".key");
        LockPath = Path + ".lock";
    }

    /// <summary>
    /// The default store path: <c>$TOLLGATE_STORE</c> when set, else <c>$XDG_CONFIG_HOME/tollgate/credentials</c>,
    /// else <c>~/.config/tollgate/credentials</c>.
    /// </summary>
    public static string DefaultPath
    {
        get
        {
            var fromEnvironment = Environment.GetEnvironmentVariable("TOLLGATE_STORE");
            if (!string.IsNullOrEmpty(fromEnvironment))
                return fromEnvironment;
            var config = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME");
            if (string.IsNullOrEmpty(config))
                config = System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
            return System.IO.Path.Combine(config, "tollgate", "credentials");
        }
    }

    /// <summary>The credentials file.</summary>
    public string Path { get; }

    /// <summary>The key file.</summary>
    public string KeyPath { get; }

    /// <summary>The lock file that serializes refreshes across processes.</summary>
    public string LockPath { get; }

    /// <inheritdoc />
    public async ValueTask<StoredCredentials?> ReadAsync(CancellationToken cancellationToken = default)
    {
        byte[] bytes;
        try
        {
            bytes = await File.ReadAllBytesAsync(Path, cancellationToken);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenStoreException($"Cannot read the credentials file {Path}: {e.Message}", e);
        }
        var envelope = ParseEnvelope(bytes);
        var key = ReadKey(mustExist: true)!;
        return Decrypt(envelope, key);
    }

    /// <inheritdoc />
    public async ValueTask WriteAsync(StoredCredentials credentials, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(credentials);
        var directory = System.IO.Path.GetDirectoryName(Path)!;
        CreateDirectory(directory);
        CreateDirectory(System.IO.Path.GetDirectoryName(KeyPath)!);

        // Never replace something we cannot read: a foreign file, a corrupt one, or one under another key.
        if (File.Exists(Path))
            _ = await ReadAsync(cancellationToken);

        var key = ReadKey(mustExist: false) ?? CreateKey();
        var content = Encrypt(credentials, key);

        var temp = System.IO.Path.Combine(directory, $".{System.IO.Path.GetFileName(Path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            await using (var stream = new FileStream(temp, PrivateFile(FileMode.CreateNew, FileAccess.Write)))
            {
                await stream.WriteAsync(content, cancellationToken);
                await stream.FlushAsync(cancellationToken);
                stream.Flush(flushToDisk: true);
            }
            cancellationToken.ThrowIfCancellationRequested();
            File.Move(temp, Path, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        DurableDirectory.Sync(directory);
    }

    /// <inheritdoc />
    public async ValueTask<bool> DeleteAsync(CancellationToken cancellationToken = default)
    {
        byte[] bytes;
        try
        {
            bytes = await File.ReadAllBytesAsync(Path, cancellationToken);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return false;
        }
        // Only ever delete our own file; the key is not needed to recognise it.
        _ = ParseEnvelope(bytes);
        File.Delete(Path);
        DurableDirectory.Sync(System.IO.Path.GetDirectoryName(Path)!);
        return true;
    }

    /// <inheritdoc />
    public async ValueTask<IAsyncDisposable> AcquireLockAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        CreateDirectory(System.IO.Path.GetDirectoryName(LockPath)!);
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        var options = PrivateFile(FileMode.OpenOrCreate, FileAccess.ReadWrite);
        // On Unix FileShare.None takes flock(LOCK_EX | LOCK_NB) on the file; the kernel drops it when the process
        // exits, however it exits.
        while (true)
        {
            try
            {
                return new FileLock(new FileStream(LockPath, options));
            }
            catch (IOException) when (Environment.TickCount64 < deadline)
            {
                await Task.Delay(Random.Shared.Next(5, 20), cancellationToken);
            }
            catch (IOException e)
            {
                throw new TimeoutException($"Timed out after {timeout.TotalSeconds:0.#} s waiting for the lock {LockPath}.", e);
            }
        }
    }

    private static FileStreamOptions PrivateFile(FileMode mode, FileAccess access)
    {
        var options = new FileStreamOptions { Mode = mode, Access = access, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
            options.UnixCreateMode = OwnerOnly;
        return options;
    }

    private static void CreateDirectory(string directory) => DurableDirectory.Create(directory, OwnerOnlyDirectory);

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private byte[]? ReadKey(bool mustExist)
    {
        byte[] key;
        try
        {
            key = File.ReadAllBytes(KeyPath);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            if (mustExist)
                throw new TokenStoreException($"The credentials file {Path} exists but its key file {KeyPath} is missing, so it cannot be decrypted; it was left untouched. Restore the key file, or move the credentials file away and log in again.");
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenStoreException($"Cannot read the key file {KeyPath}: {e.Message}", e);
        }
        if (key.Length != KeySize)
            throw new TokenStoreException($"The key file {KeyPath} is not a Tollgate key ({key.Length} bytes, expected {KeySize}); it was left untouched.");
        return key;
    }

    private byte[] CreateKey()
    {
        var key = RandomNumberGenerator.GetBytes(KeySize);
        var directory = System.IO.Path.GetDirectoryName(KeyPath)!;
        var temp = System.IO.Path.Combine(directory, $".{System.IO.Path.GetFileName(KeyPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, PrivateFile(FileMode.CreateNew, FileAccess.Write)))
            {
                stream.Write(key);
                stream.Flush(flushToDisk: true);
            }
            // No overwrite: if another process created the key first, use that one.
            File.Move(temp, KeyPath, overwrite: false);
            DurableDirectory.Sync(directory);
            return key;
        }
        catch (IOException) when (File.Exists(KeyPath))
        {
            TryDelete(temp);
            return ReadKey(mustExist: true)!;
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    private static string KeyId(byte[] key) => Convert.ToHexStringLower(SHA256.HashData(key).AsSpan(0, 8));

    private static byte[] AssociatedData(string keyId) => Encoding.UTF8.GetBytes($"{Format}/{FormatVersion}/{keyId}");

    private byte[] Encrypt(StoredCredentials credentials, byte[] key)
    {
        var plaintext = JsonSerializer.SerializeToUtf8Bytes(StorePayload.From(credentials), StoreJsonContext.Default.StorePayload);
        var nonce = RandomNumberGenerator.GetBytes(NonceSize);
        var ciphertext = new byte[plaintext.Length];
        var tag = new byte[TagSize];
        var keyId = KeyId(key);
        using (var aes = new AesGcm(key, TagSize))
            aes.Encrypt(nonce, plaintext, ciphertext, tag, AssociatedData(keyId));
        CryptographicOperations.ZeroMemory(plaintext);
        var envelope = new StoreEnvelope
        {
            Format = Format,
            Version = FormatVersion,
            Algorithm = "A256GCM",
            KeyId = keyId,
            Nonce = Convert.ToBase64String(nonce),
            Ciphertext = Convert.ToBase64String(ciphertext),
            Tag = Convert.ToBase64String(tag),
        };
        var json = JsonSerializer.SerializeToUtf8Bytes(envelope, StoreJsonContext.Default.StoreEnvelope);
        return [.. json, (byte)'\n'];
    }

    private StoreEnvelope ParseEnvelope(byte[] bytes)
    {
        StoreEnvelope? envelope = null;
        try
        {
            envelope = JsonSerializer.Deserialize(bytes, StoreJsonContext.Default.StoreEnvelope);
        }
        catch (JsonException)
        {
        }
        if (envelope is null || envelope.Format != Format || envelope.Nonce is null || envelope.Ciphertext is null || envelope.Tag is null || envelope.KeyId is null)
            throw new TokenStoreException($"{Path} is not a Tollgate credentials file (corrupt or foreign); it was left untouched. Move it away or use another --store path, then log in again.");
        if (envelope.Version != FormatVersion || envelope.Algorithm != "A256GCM")
            throw new TokenStoreException($"{Path} is a Tollgate credentials file of an unsupported version ({envelope.Version}, {envelope.Algorithm}); it was left untouched.");
        return envelope;
    }

    private StoredCredentials Decrypt(StoreEnvelope envelope, byte[] key)
    {
        var keyId = KeyId(key);
        if (envelope.KeyId != keyId)
            throw new TokenStoreException($"{Path} was encrypted with another key than {KeyPath}; it was left untouched. Restore the matching key file, or move the credentials file away and log in again.");
        byte[] plaintext;
        try
        {
            var nonce = Convert.FromBase64String(envelope.Nonce!);
            var ciphertext = Convert.FromBase64String(envelope.Ciphertext!);
            var tag = Convert.FromBase64String(envelope.Tag!);
            plaintext = new byte[ciphertext.Length];
            using var aes = new AesGcm(key, TagSize);
            aes.Decrypt(nonce, ciphertext, tag, plaintext, AssociatedData(keyId));
        }
        catch (Exception e) when (e is FormatException or CryptographicException or ArgumentException)
        {
            throw new TokenStoreException($"{Path} is corrupt: its content fails authentication ({e.GetType().Name}); it was left untouched. Move it away and log in again.", e);
        }
        try
        {
            var payload = JsonSerializer.Deserialize(plaintext, StoreJsonContext.Default.StorePayload);
            return payload?.ToCredentials() ?? throw new JsonException("empty payload");
        }
        catch (Exception e) when (e is JsonException or UriFormatException or ArgumentException)
        {
            throw new TokenStoreException($"{Path} decrypts but does not hold valid credentials; it was left untouched.", e);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(plaintext);
        }
    }

    private sealed class FileLock(FileStream stream) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => stream.DisposeAsync();
    }
}

internal sealed class StoreEnvelope
{
    [JsonPropertyName("format")]
    public string? Format { get; set; }

    [JsonPropertyName("version")]
    public int Version { get; set; }

    [JsonPropertyName("alg")]
    public string? Algorithm { get; set; }

    [JsonPropertyName("kid")]
    public string? KeyId { get; set; }

    [JsonPropertyName("nonce")]
    public string? Nonce { get; set; }

    [JsonPropertyName("ciphertext")]
    public string? Ciphertext { get; set; }

    [JsonPropertyName("tag")]
    public string? Tag { get; set; }
}

internal sealed class StorePayload
{
    [JsonPropertyName("token_endpoint")]
    public string? TokenEndpoint { get; set; }

    [JsonPropertyName("client_id")]
    public string? ClientId { get; set; }

    [JsonPropertyName("client_secret")]
    public string? ClientSecret { get; set; }

    [JsonPropertyName("refresh_token")]
    public string? RefreshToken { get; set; }

    [JsonPropertyName("access_token")]
    public string? AccessToken { get; set; }

    [JsonPropertyName("access_token_expires_at")]
    public long? AccessTokenExpiresAt { get; set; }

    [JsonPropertyName("scope")]
    public string? Scope { get; set; }

    public static StorePayload From(StoredCredentials c) => new()
    {
        TokenEndpoint = c.TokenEndpoint.AbsoluteUri,
        ClientId = c.ClientId,
        ClientSecret = c.ClientSecret,
        RefreshToken = c.RefreshToken,
        AccessToken = c.AccessToken,
        AccessTokenExpiresAt = c.AccessTokenExpiresAt?.ToUnixTimeMilliseconds(),
        Scope = c.Scope,
    };

    public StoredCredentials ToCredentials()
    {
        if (string.IsNullOrEmpty(TokenEndpoint) || string.IsNullOrEmpty(ClientId) || string.IsNullOrEmpty(RefreshToken))
            throw new JsonException("missing token_endpoint, client_id or refresh_token");
        return new StoredCredentials
        {
            TokenEndpoint = new Uri(TokenEndpoint, UriKind.Absolute),
            ClientId = ClientId,
            ClientSecret = ClientSecret,
            RefreshToken = RefreshToken,
            AccessToken = AccessToken,
            AccessTokenExpiresAt = AccessTokenExpiresAt is { } ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null,
            Scope = Scope,
        };
    }
}

[JsonSerializable(typeof(StoreEnvelope))]
[JsonSerializable(typeof(StorePayload))]
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class StoreJsonContext : JsonSerializerContext;
