using System.Buffers.Binary;
using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace Tollgate.Server.Crypto;

/// <summary>What an access token asserts. <see cref="UserId"/> is empty for client-credentials tokens.</summary>
internal sealed record AccessTokenClaims(
    string ClientId, string UserId, string Scope, long GrantId, DateTimeOffset IssuedAt, DateTimeOffset ExpiresAt);

/// <summary>
/// Access tokens are sealed, self-contained values: <c>Atza|</c> + base64url(header | nonce | AES-256-GCM(claims) | tag).
/// </summary>
/// <remarks>
/// Why sealed rather than random-and-stored: an access token is checked far more often than it is
/// issued, and a sealed token validates with no database read and costs no write when issued
/// (so a <c>reuse</c>-policy refresh writes nothing at all). AES-GCM gives both secrecy (the token is
/// as opaque as Amazon's: clients cannot come to depend on its contents) and integrity (a forged or
/// altered token fails the tag check). Revocation still works: tokeninfo checks the grant the token
/// came from (see <see cref="AccessTokenClaims.GrantId"/>).
/// The header (format version and key id) is authenticated as associated data, so the key id
/// cannot be swapped; a random 96-bit nonce per token keeps GCM safe well past 2^32 tokens per key
/// (NIST SP 800-38D §8.3), and keys are replaceable through the key id.
/// </remarks>
internal sealed class AccessTokenCodec : IDisposable
{
    public const string Prefix = "Atza|";
    public const int MaxTokenLength = 2048;
    private const byte FormatVersion = 1;
    private const int HeaderLength = 5;
    private const int NonceLength = 12;
    private const int TagLength = 16;
    private const int FixedClaimsLength = 3 * sizeof(long);

    /// <summary>The key ring's current state; replaced whole on rotation so a token never sees half an update.</summary>
    private volatile KeySet _keys;

    // Every AesGcm ever made, disposed with the codec: a key dropped from the ring may still be in use on another thread.
    private readonly List<ThreadLocal<AesGcm>> _allCiphers = [];

    public AccessTokenCodec(IReadOnlyDictionary<int, byte[]> keys, int currentKeyId)
    {
        _keys = BuildKeySet(keys, currentKeyId, null);
    }

    /// <summary>The key id new tokens are sealed with.</summary>
    public int CurrentKeyId => _keys.CurrentId;

    /// <summary>Key ids that open tokens.</summary>
    public IReadOnlyCollection<int> KeyIds => _keys.Ciphers.Keys;

    /// <summary>Swaps in a new key ring (rotation): tokens sealed with any key still in it keep opening.</summary>
    public void SetKeys(IReadOnlyDictionary<int, byte[]> keys, int currentKeyId) =>
        _keys = BuildKeySet(keys, currentKeyId, _keys);

    private KeySet BuildKeySet(IReadOnlyDictionary<int, byte[]> keys, int currentKeyId, KeySet? previous)
    {
        if (!keys.ContainsKey(currentKeyId))
        {
            throw new ArgumentException("the current key must be one of the keys", nameof(currentKeyId));
        }
        var ciphers = new Dictionary<int, ThreadLocal<AesGcm>>();
        foreach (var (id, key) in keys)
        {
            // Key ids are never reused (the store assigns them), so an id already loaded has the same material.
            if (previous is not null && previous.Ciphers.TryGetValue(id, out var loaded))
            {
                ciphers[id] = loaded;
                continue;
            }
            var material = key.ToArray();
            // AesGcm instances are not thread-safe; one per thread avoids both locking and a key schedule per token.
            var local = new ThreadLocal<AesGcm>(() => new AesGcm(material, TagLength), trackAllValues: true);
            lock (_allCiphers)
            {
                _allCiphers.Add(local);
            }
            ciphers[id] = local;
        }
        return new KeySet(ciphers, currentKeyId);
    }

    private sealed record KeySet(Dictionary<int, ThreadLocal<AesGcm>> Ciphers, int CurrentId);

    public string Seal(AccessTokenClaims claims)
    {
        int plainLength = FixedClaimsLength + 3 * sizeof(ushort)
            + Encoding.UTF8.GetByteCount(claims.ClientId)
            + Encoding.UTF8.GetByteCount(claims.UserId)
            + Encoding.UTF8.GetByteCount(claims.Scope);
        int rawLength = HeaderLength + NonceLength + plainLength + TagLength;
        int tokenLength = Prefix.Length + Base64Url.GetEncodedLength(rawLength);
        if (tokenLength > MaxTokenLength)
        {
            // Callers bound client ids and scopes long before this; reaching here is a programming error.
            throw new InvalidOperationException("access token would exceed 2048 bytes");
        }

        var keys = _keys;
        Span<byte> raw = rawLength <= 1536 ? stackalloc byte[rawLength] : new byte[rawLength];
        var header = raw[..HeaderLength];
        header[0] = FormatVersion;
        BinaryPrimitives.WriteInt32BigEndian(header[1..], keys.CurrentId);
        var nonce = raw.Slice(HeaderLength, NonceLength);
        Secrets.FillRandom(nonce);
        var cipherText = raw.Slice(HeaderLength + NonceLength, plainLength);
        var tag = raw[^TagLength..];

        Span<byte> plain = plainLength <= 1536 ? stackalloc byte[plainLength] : new byte[plainLength];
        BinaryPrimitives.WriteInt64BigEndian(plain, claims.IssuedAt.ToUnixTimeSeconds());
        BinaryPrimitives.WriteInt64BigEndian(plain[8..], claims.ExpiresAt.ToUnixTimeSeconds());
        BinaryPrimitives.WriteInt64BigEndian(plain[16..], claims.GrantId);
        int offset = FixedClaimsLength;
        offset += WriteString(plain[offset..], claims.ClientId);
        offset += WriteString(plain[offset..], claims.UserId);
        WriteString(plain[offset..], claims.Scope);

        keys.Ciphers[keys.CurrentId].Value!.Encrypt(nonce, plain, cipherText, tag, header);
        // Prefix and base64url written side by side, so the token is the only string allocated (the length check above bounds the stack use).
        Span<char> text = stackalloc char[tokenLength];
        Prefix.CopyTo(text);
        Base64Url.EncodeToChars(raw, text[Prefix.Length..]);
        return new string(text);
    }

    /// <summary>Returns the claims if the token is authentic; expiry and revocation are the caller's checks.</summary>
    public AccessTokenClaims? Open(ReadOnlySpan<char> token)
    {
        if (token.Length > MaxTokenLength || !token.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return null;
        }
        var encoded = token[Prefix.Length..];
        Span<byte> raw = stackalloc byte[MaxTokenLength];
        if (Base64Url.DecodeFromChars(encoded, raw, out int consumed, out int rawLength) != System.Buffers.OperationStatus.Done
            || consumed != encoded.Length
            || rawLength < HeaderLength + NonceLength + FixedClaimsLength + 3 * sizeof(ushort) + TagLength)
        {
            return null;
        }
        raw = raw[..rawLength];
        var header = raw[..HeaderLength];
        if (header[0] != FormatVersion
            || !_keys.Ciphers.TryGetValue(BinaryPrimitives.ReadInt32BigEndian(header[1..]), out var cipher))
        {
            return null;
        }
        var nonce = raw.Slice(HeaderLength, NonceLength);
        var cipherText = raw[(HeaderLength + NonceLength)..^TagLength];
        var tag = raw[^TagLength..];
        Span<byte> plain = stackalloc byte[cipherText.Length];
        try
        {
            cipher.Value!.Decrypt(nonce, cipherText, tag, plain, header);
        }
        catch (AuthenticationTagMismatchException)
        {
            return null;
        }

        var issuedAt = DateTimeOffset.FromUnixTimeSeconds(BinaryPrimitives.ReadInt64BigEndian(plain));
        var expiresAt = DateTimeOffset.FromUnixTimeSeconds(BinaryPrimitives.ReadInt64BigEndian(plain[8..]));
        long grantId = BinaryPrimitives.ReadInt64BigEndian(plain[16..]);
        var rest = plain[FixedClaimsLength..];
        // The tag proved we wrote these bytes, so the length prefixes are trustworthy.
        string clientId = ReadString(ref rest);
        string userId = ReadString(ref rest);
        string scope = ReadString(ref rest);
        return new AccessTokenClaims(clientId, userId, scope, grantId, issuedAt, expiresAt);
    }

    private static int WriteString(Span<byte> destination, string value)
    {
        int written = Encoding.UTF8.GetBytes(value, destination[sizeof(ushort)..]);
        BinaryPrimitives.WriteUInt16BigEndian(destination, checked((ushort)written));
        return sizeof(ushort) + written;
    }

    private static string ReadString(ref Span<byte> source)
    {
        int length = BinaryPrimitives.ReadUInt16BigEndian(source);
        string value = Encoding.UTF8.GetString(source.Slice(sizeof(ushort), length));
        source = source[(sizeof(ushort) + length)..];
        return value;
    }

    public void Dispose()
    {
        foreach (var local in _allCiphers)
        {
            foreach (var aes in local.Values)
            {
                aes.Dispose();
            }
            local.Dispose();
        }
    }
}
