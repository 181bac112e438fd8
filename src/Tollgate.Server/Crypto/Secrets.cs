using System.Buffers;
using System.Buffers.Binary;
using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace Tollgate.Server.Crypto;

/// <summary>
/// Every random value and every hash Tollgate makes comes from here, so that an auditor reads
/// one file to know how secrets are born, stored and compared.
/// </summary>
/// <remarks>
/// Design rules, each stopping a known attack:
/// <list type="bullet">
/// <item>All randomness comes from <see cref="RandomNumberGenerator"/> (a CSPRNG); never <c>System.Random</c>.
/// Values minted per request take theirs through <see cref="FillRandom"/>, which draws it in blocks.</item>
/// <item>Codes, refresh tokens and client secrets carry at least 256 bits of entropy, so a single
/// SHA-256 is enough to store them: nobody can brute-force a 2^256 pre-image, and a slow KDF
/// (PBKDF2, as OpenIddict and Hydra use) would only cost throughput (see docs). Low-entropy
/// secrets (user passwords) go through ASP.NET Core Identity's PBKDF2 hasher instead.</item>
/// <item>The store holds only these hashes: a stolen database file yields no usable token.</item>
/// <item>Comparisons of secret material use <see cref="CryptographicOperations.FixedTimeEquals"/>
/// so response timing leaks nothing about how many bytes matched.</item>
/// <item>Logs carry <see cref="ShortHash"/> (8 hex chars of SHA-256), never the value itself.</item>
/// </list>
/// </remarks>
internal static class Secrets
{
    public const int HashLength = 32;

    /// <summary>Bytes drawn per refill of a thread's block: about seventeen rotations' worth (token, nonce, request id).</summary>
    private const int RandomBlockLength = 1024;

    [ThreadStatic]
    private static byte[]? t_randomBlock;

    [ThreadStatic]
    private static int t_randomUsed;

    /// <summary>
    /// Fills <paramref name="destination"/> with bytes of <see cref="RandomNumberGenerator"/>, taken from a block that
    /// this thread drew from it earlier. For the values every request mints (a refresh token's 256 bits, an access
    /// token's GCM nonce, a request id).
    /// </summary>
    /// <remarks>
    /// Why a block: on Linux each <see cref="RandomNumberGenerator.Fill"/> is a call into OpenSSL's RAND_bytes, which
    /// clears OpenSSL's error queue and makes a getpid system call (its fork check) before it generates anything; a
    /// request that drew three values paid that three times. Drawing a kilobyte at a time pays it once per seventeen
    /// or so requests (docs/performance.md, "Randomness in blocks"). Nothing is weaker for it: every byte still comes
    /// from the CSPRNG, each is handed out once and zeroed in the block as it goes, and the block is per thread, so
    /// no lock and no two callers ever see the same bytes. A process this runs in never forks without exec, so no
    /// copy of a block can live on in a child. Long-lived keys still come from <see cref="RandomNumberGenerator"/>
    /// directly: there is nothing to save there.
    /// </remarks>
    public static void FillRandom(Span<byte> destination)
    {
        if (destination.Length > RandomBlockLength / 4)
        {
            RandomNumberGenerator.Fill(destination);
            return;
        }
        // On the pinned heap: a compacting GC never moves it, so no stale copy of bytes not yet handed out is left behind.
        var block = t_randomBlock ??= GC.AllocateArray<byte>(RandomBlockLength, pinned: true);
        if (t_randomUsed == 0 || t_randomUsed + destination.Length > RandomBlockLength)
        {
            RandomNumberGenerator.Fill(block);
            t_randomUsed = 0;
        }
        var taken = block.AsSpan(t_randomUsed, destination.Length);
        taken.CopyTo(destination);
        CryptographicOperations.ZeroMemory(taken);
        t_randomUsed += destination.Length;
    }

    /// <summary>A version 4 (random) UUID, the shape of Amazon's <c>x-amzn-RequestId</c>, from <see cref="FillRandom"/>.</summary>
    public static Guid NewRequestId()
    {
        Span<byte> bytes = stackalloc byte[16];
        FillRandom(bytes);
        bytes[7] = (byte)((bytes[7] & 0x0F) | 0x40); // RFC 9562 §5.4: version 4 (Guid keeps its first three fields little-endian)
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80); // and the RFC's variant
        return new Guid(bytes);
    }

    /// <summary>Base64url without padding: the characters survive <c>curl --data</c> and form decoding unchanged.</summary>
    public static string RandomUrlSafe(int bytes)
    {
        Span<byte> buffer = stackalloc byte[bytes];
        RandomNumberGenerator.Fill(buffer);
        return Base64Url.EncodeToString(buffer);
    }

    public static string RandomHex(int bytes)
    {
        Span<byte> buffer = stackalloc byte[bytes];
        RandomNumberGenerator.Fill(buffer);
        return Convert.ToHexStringLower(buffer);
    }

    private const string Base32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    /// <summary>Upper-case base32, the look of Amazon's account ids (<c>amzn1.account.AF3...</c>).</summary>
    public static string RandomBase32(int chars)
    {
        return RandomNumberGenerator.GetString(Base32Alphabet, chars);
    }

    /// <summary>SHA-256 of the UTF-8 bytes of a high-entropy secret; what the store keeps.</summary>
    public static byte[] Hash(string secret)
    {
        var hash = new byte[HashLength];
        Hash(secret, hash);
        return hash;
    }

    public static void Hash(ReadOnlySpan<char> secret, Span<byte> destination)
    {
        int max = Encoding.UTF8.GetMaxByteCount(secret.Length);
        byte[]? pooled = null;
        Span<byte> utf8 = max <= 256 ? stackalloc byte[256] : (pooled = ArrayPool<byte>.Shared.Rent(max));
        try
        {
            int written = Encoding.UTF8.GetBytes(secret, utf8);
            SHA256.HashData(utf8[..written], destination);
            CryptographicOperations.ZeroMemory(utf8[..written]);
        }
        finally
        {
            if (pooled is not null)
            {
                ArrayPool<byte>.Shared.Return(pooled);
            }
        }
    }

    /// <summary>Constant-time comparison of a presented secret against a stored hash.</summary>
    public static bool Matches(ReadOnlySpan<char> presented, ReadOnlySpan<byte> storedHash)
    {
        Span<byte> hash = stackalloc byte[HashLength];
        Hash(presented, hash);
        return CryptographicOperations.FixedTimeEquals(hash, storedHash);
    }

    /// <summary>A log-safe fingerprint: enough to correlate lines, useless to an attacker.</summary>
    public static string ShortHash(ReadOnlySpan<char> secret)
    {
        Span<byte> hash = stackalloc byte[HashLength];
        Hash(secret, hash);
        return Convert.ToHexStringLower(hash[..4]);
    }

    /// <summary>
    /// PKCE (RFC 7636 §4.6): S256 compares BASE64URL(SHA256(ASCII(verifier))) with the challenge;
    /// plain compares them directly. Both in constant time.
    /// </summary>
    public static bool VerifiesPkce(string verifier, string challenge, string method)
    {
        if (method == "plain")
        {
            return CryptographicOperations.FixedTimeEquals(
                Encoding.ASCII.GetBytes(verifier), Encoding.ASCII.GetBytes(challenge));
        }
        Span<byte> expected = stackalloc byte[PkceS256Length];
        PkceS256(verifier, expected);
        return CryptographicOperations.FixedTimeEquals(expected, Encoding.ASCII.GetBytes(challenge));
    }

    /// <summary>
    /// The S256 challenge <paramref name="verifier"/> answers (RFC 7636 §4.2), for PostgreSQL to compare with a code's
    /// challenge inside the statement that redeems it (<see cref="Storage.RedemptionTerms"/>). That comparison is not
    /// constant-time, and need not be: a challenge is no secret, it travelled through the user's browser in the
    /// authorization request; what PKCE keeps secret is the verifier, which only the client and this hash ever see.
    /// </summary>
    public static string PkceS256Challenge(string verifier)
    {
        Span<byte> challenge = stackalloc byte[PkceS256Length];
        PkceS256(verifier, challenge);
        return Encoding.ASCII.GetString(challenge);
    }

    private const int PkceS256Length = 43; // 32 bytes in unpadded base64url

    /// <summary>BASE64URL(SHA256(ASCII(verifier))).</summary>
    private static void PkceS256(string verifier, Span<byte> challenge)
    {
        Span<byte> digest = stackalloc byte[HashLength];
        SHA256.HashData(Encoding.ASCII.GetBytes(verifier), digest);
        Base64Url.EncodeToUtf8(digest, challenge);
    }

    // ---- The shapes of Amazon's identifiers and tokens (PROTOCOL.md) ----

    public const string RefreshTokenPrefix = "Atzr|";

    /// <summary><c>amzn1.application-oa2-client.</c> + 32 lowercase hex.</summary>
    public static string NewClientId() => "amzn1.application-oa2-client." + RandomHex(16);

    /// <summary>Amazon's newer secret format: <c>amzn1.oa2-cs.v1.</c> + 64 lowercase hex (256 bits).</summary>
    public static string NewClientSecret() => "amzn1.oa2-cs.v1." + RandomHex(32);

    /// <summary><c>amzn1.application.</c> + 32 lowercase hex.</summary>
    public static string NewAppId() => "amzn1.application." + RandomHex(16);

    /// <summary><c>amzn1.account.</c> + 28 upper-case base32 characters, like Amazon's account ids.</summary>
    public static string NewUserId() => "amzn1.account." + RandomBase32(28);

    /// <summary>Its issue time and 256 random bits, base64url (see <see cref="StoreKey"/>): safe to paste into <c>curl --data</c>.</summary>
    public static string NewAuthorizationCode(DateTimeOffset issuedAt) => NewTimeOrdered(issuedAt);

    /// <summary><c>Atzr|</c> + its issue time and 256 random bits, base64url (see <see cref="StoreKey"/>).</summary>
    public static string NewRefreshToken(DateTimeOffset issuedAt) => RefreshTokenPrefix + NewTimeOrdered(issuedAt);

    // ---- Store keys of refresh tokens and authorization codes ----

    private const int IssuedAtBytes = 6;
    private const int IssuedAtChars = 8; // base64url of 6 bytes, no padding
    private const int TimeOrderedChars = 51; // base64url of 6 + 32 bytes, no padding

    /// <summary>
    /// What the store keeps, and looks up, for a refresh token or an authorization code: the 6 bytes of its issue
    /// time followed by the SHA-256 of the whole value. A value without the time (issued before Tollgate put it
    /// there, or not ours at all) is keyed by the SHA-256 alone; the two kinds of key differ in length, so they can
    /// never be equal.
    /// </summary>
    /// <remarks>
    /// Why the time: a key that is only a hash lands on a random page of the table's B-tree, so every write of a
    /// batch dirtied a page of its own (a rotation two: the token it consumes and the one it stores), and each such
    /// page is written whole to the WAL and synced. Keys that grow with time put the new rows of a batch, and the
    /// recently issued rows a rotation consumes, on the same few pages at the end of the tree, as UUIDv7 and ULID do
    /// for the same reason (measured in docs/performance.md). It costs nothing in secrecy: the 256 random bits are
    /// unchanged, the time is only what its holder already knows (when it got the value), and a forged time changes
    /// the hash too, so it finds nothing.
    /// </remarks>
    public static byte[] StoreKey(ReadOnlySpan<char> value)
    {
        var body = value.StartsWith(RefreshTokenPrefix, StringComparison.Ordinal) ? value[RefreshTokenPrefix.Length..] : value;
        Span<byte> issuedAt = stackalloc byte[IssuedAtBytes];
        // DecodeFromChars reports bad input instead of throwing (TryDecodeFromChars throws): the value is the caller's.
        bool timeOrdered = body.Length == TimeOrderedChars
            && Base64Url.DecodeFromChars(body[..IssuedAtChars], issuedAt, out _, out int decoded) == OperationStatus.Done
            && decoded == IssuedAtBytes;
        var key = new byte[(timeOrdered ? IssuedAtBytes : 0) + HashLength];
        if (timeOrdered)
        {
            issuedAt.CopyTo(key);
        }
        Hash(value, key.AsSpan(key.Length - HashLength));
        return key;
    }

    private static string NewTimeOrdered(DateTimeOffset issuedAt)
    {
        Span<byte> raw = stackalloc byte[2 + IssuedAtBytes + 32];
        // Big-endian milliseconds since 1970, so that byte order is time order; 6 bytes last until the year 10889.
        BinaryPrimitives.WriteInt64BigEndian(raw, Math.Max(0, issuedAt.ToUnixTimeMilliseconds()));
        FillRandom(raw[(2 + IssuedAtBytes)..]);
        return Base64Url.EncodeToString(raw[2..]);
    }

    /// <summary>A device code (LWA codepair): 256 random bits, base64url; only the device ever sees it.</summary>
    public static string NewDeviceCode() => RandomUrlSafe(32);

    /// <summary>
    /// Characters of user codes: consonants only (no vowels, so no words; no 0/O or 1/I to confuse),
    /// as RFC 8628 §6.1 suggests. Eight of them give 20^8 ≈ 2^34.6 codes, far more than can be tried
    /// in a code's 10 minutes.
    /// </summary>
    public const string UserCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ";

    public const int UserCodeLength = 8;

    /// <summary>A user code in canonical form (no separator); people see it as XXXX-XXXX.</summary>
    public static string NewUserCode() => RandomNumberGenerator.GetString(UserCodeAlphabet, UserCodeLength);

    /// <summary>What a person typed, in canonical form: case, spaces and dashes do not matter. Null if it cannot be a user code.</summary>
    public static string? NormalizeUserCode(string? typed)
    {
        if (typed is null || typed.Length > 32)
        {
            return null;
        }
        var code = new string([.. typed.Where(c => c is not (' ' or '-')).Select(char.ToUpperInvariant)]);
        return code.Length == UserCodeLength && code.All(c => UserCodeAlphabet.Contains(c, StringComparison.Ordinal)) ? code : null;
    }

    /// <summary>A fresh AES-256 key for sealing access tokens.</summary>
    public static byte[] NewAccessTokenKey() => RandomNumberGenerator.GetBytes(32);
}
