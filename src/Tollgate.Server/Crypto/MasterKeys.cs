using System.Security.Cryptography;
using System.Text;

namespace Tollgate.Server.Crypto;

/// <summary>
/// The master key encrypts the keys Tollgate keeps in its store (access-token keys today, cookie keys later),
/// so that a copy of the database file alone cannot forge or open access tokens. It comes from configuration
/// (<c>Tollgate:MasterKey</c>, <c>Tollgate__MasterKey</c> or <c>Tollgate:MasterKeyFile</c>), never from the store.
/// </summary>
/// <remarks>
/// Format of a protected value: version (1) | nonce (12) | AES-256-GCM ciphertext | tag (16), with the purpose
/// string as associated data, so a value protected for one purpose cannot be passed off as another.
/// Each master key is known by an id, the first 8 hex digits of SHA-256 over a label and the key: the store records
/// which master key protects which row, without holding anything that helps guess the key.
/// Replaced master keys go in <c>Tollgate:PreviousMasterKeys</c>; rows under them are re-encrypted at start.
/// </remarks>
internal sealed class MasterKeys
{
    private const byte Version = 1;
    private const int KeyLength = 32;
    private const int NonceLength = 12;
    private const int TagLength = 16;

    private readonly Dictionary<string, byte[]> _keys = new(StringComparer.Ordinal);

    private MasterKeys(byte[] current, IEnumerable<byte[]> previous)
    {
        CurrentId = IdOf(current);
        _keys[CurrentId] = current;
        foreach (var key in previous)
        {
            _keys.TryAdd(IdOf(key), key);
        }
    }

    /// <summary>The id of the master key new values are protected with.</summary>
    public string CurrentId { get; }

    public bool Knows(string id) => _keys.ContainsKey(id);

    /// <summary>The configured master keys, or null when none is configured (keys are then stored in the clear).</summary>
    public static MasterKeys? From(TollgateOptions options)
    {
        var current = Read(options, out var problem);
        if (problem is not null)
        {
            throw new TollgateConfigurationException(problem);
        }
        return current is null ? null : new MasterKeys(current, options.PreviousMasterKeys.Select(k => Decode(k)!));
    }

    /// <summary>Names the bad setting, for <see cref="TollgateOptions.Validate"/>.</summary>
    public static string? Problem(TollgateOptions options)
    {
        Read(options, out var problem);
        if (problem is not null)
        {
            return problem;
        }
        if (options.PreviousMasterKeys.Count > 0 && options.MasterKey is null && options.MasterKeyFile is null)
        {
            return "Tollgate:PreviousMasterKeys needs Tollgate:MasterKey (the key to re-encrypt with)";
        }
        for (int i = 0; i < options.PreviousMasterKeys.Count; i++)
        {
            if (Decode(options.PreviousMasterKeys[i]) is null)
            {
                return $"Tollgate:PreviousMasterKeys:{i} must be base64 of 32 bytes";
            }
        }
        return null;
    }

    private static byte[]? Read(TollgateOptions options, out string? problem)
    {
        problem = null;
        string? text = options.MasterKey;
        string key = "Tollgate:MasterKey";
        if (string.IsNullOrWhiteSpace(text) && !string.IsNullOrWhiteSpace(options.MasterKeyFile))
        {
            key = "Tollgate:MasterKeyFile";
            try
            {
                text = File.ReadAllText(options.MasterKeyFile);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                problem = $"Tollgate:MasterKeyFile cannot be read: {e.Message}";
                return null;
            }
        }
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }
        var decoded = Decode(text);
        if (decoded is null)
        {
            problem = $"{key} must be base64 of 32 random bytes (make one with: tollgate keys new-master-key)";
        }
        return decoded;
    }

    private static byte[]? Decode(string text)
    {
        var buffer = new byte[KeyLength + 3];
        return Convert.TryFromBase64String(text.Trim(), buffer, out int length) && length == KeyLength ? buffer[..KeyLength] : null;
    }

    public static string NewMasterKey() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(KeyLength));

    public static string IdOf(byte[] key)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData([.. "tollgate master key id\n"u8, .. key], hash);
        return Convert.ToHexStringLower(hash[..4]);
    }

    public byte[] Protect(ReadOnlySpan<byte> plaintext, string purpose)
    {
        var output = new byte[1 + NonceLength + plaintext.Length + TagLength];
        output[0] = Version;
        var nonce = output.AsSpan(1, NonceLength);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(_keys[CurrentId], TagLength);
        aes.Encrypt(nonce, plaintext, output.AsSpan(1 + NonceLength, plaintext.Length), output.AsSpan(output.Length - TagLength), Encoding.UTF8.GetBytes(purpose));
        return output;
    }

    /// <summary>The plaintext, or null if <paramref name="keyId"/> is not configured or the value was altered.</summary>
    public byte[]? Unprotect(byte[] protectedValue, string keyId, string purpose)
    {
        if (!_keys.TryGetValue(keyId, out var key) || protectedValue.Length < 1 + NonceLength + TagLength || protectedValue[0] != Version)
        {
            return null;
        }
        var plaintext = new byte[protectedValue.Length - 1 - NonceLength - TagLength];
        using var aes = new AesGcm(key, TagLength);
        try
        {
            aes.Decrypt(protectedValue.AsSpan(1, NonceLength), protectedValue.AsSpan(1 + NonceLength, plaintext.Length),
                protectedValue.AsSpan(protectedValue.Length - TagLength), plaintext, Encoding.UTF8.GetBytes(purpose));
        }
        catch (AuthenticationTagMismatchException)
        {
            return null;
        }
        return plaintext;
    }
}
