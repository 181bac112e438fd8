using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tollgate.Server.Audit;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Crypto;

/// <summary>
/// The access-token keys, shared by every node through the store: loaded at start, re-read every
/// <see cref="KeyOptions.RefreshSeconds"/>, rotated on schedule, encrypted under the master key, pruned when
/// no token sealed with them can still be alive.
/// </summary>
/// <remarks>
/// Rotation without a flag day: a new key is written with an activation time <see cref="KeyOptions.ActivationDelay"/>
/// (two refresh periods) ahead, so every node has read it before any node seals with it; until then nodes keep
/// sealing with the previous key, and every node opens tokens under any key in the ring. A replaced key stays in
/// the ring until the longest-lived token it sealed has expired (access-token lifetime, plus an hour for clock skew).
/// </remarks>
internal sealed class KeyRing(
    ITokenStore store, MasterKeys? master, TimeProvider time, TollgateOptions options, AuditTrail audit, ILogger<KeyRing> logger)
    : BackgroundService
{
    public const string Purpose = "tollgate access-token key";
    private static readonly TimeSpan SkewMargin = TimeSpan.FromHours(1);

    private AccessTokenCodec? _codec;

    /// <summary>The codec every endpoint uses; its keys are swapped in place on rotation.</summary>
    public AccessTokenCodec Codec => _codec ?? throw new InvalidOperationException("the key ring has not been loaded");

    /// <summary>
    /// One pass: create the first key or the next one when due, encrypt keys still in the clear (or under a previous master
    /// key), drop retired keys, and hand the result to the codec. At start a key the configured master keys cannot open
    /// is a configuration error; later it is logged and the keys already loaded stay in use.
    /// </summary>
    public async Task RefreshAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var rotation = TimeSpan.FromDays(options.Keys.AccessTokenKeyRotationDays);
        var rows = await store.ListAccessTokenKeysAsync(ct);

        if (rows.Count == 0 || now - rows.Max(k => k.CreatedAt) >= rotation)
        {
            // The first key is used at once (no node can have tokens yet); later ones after every node has seen them.
            var activates = rows.Count == 0 ? now : now + options.Keys.ActivationDelay;
            bool added = await AddKeyAsync(now, activates, rows.Count == 0 ? DateTimeOffset.MinValue : now - rotation, ct);
            if (added && rows.Count > 0)
            {
                logger.LogInformation("Access-token key rotated; the new key seals tokens from {ActivatesAt:o}", activates);
                audit.Record(new AuditEvent(now, AuditEvents.KeyRotated, null, null, null, null, $"new access-token key activates at {activates:o}"));
            }
            rows = await store.ListAccessTokenKeysAsync(ct);
        }

        var keys = new Dictionary<int, byte[]>();
        foreach (var row in rows)
        {
            keys[row.Id] = await OpenAsync(row, ct);
        }

        // The current key: the newest that has activated (ties cannot happen: ids grow with creation).
        var active = rows.Where(k => k.ActivatesAt <= now).ToList();
        var current = active.Count > 0 ? active.MaxBy(k => (k.ActivatesAt, k.Id))! : rows.MinBy(k => k.Id)!;

        // Retired: a newer key activated so long ago that every token sealed with this one has expired.
        var retention = options.AccessTokenLifetime + SkewMargin;
        var retired = rows.Where(k => k.Id != current.Id && active.Any(n => n.ActivatesAt > k.ActivatesAt && n.ActivatesAt + retention < now))
            .Select(k => k.Id).ToList();
        if (retired.Count > 0)
        {
            await store.DeleteAccessTokenKeysAsync(retired, ct);
            foreach (int id in retired)
            {
                keys.Remove(id);
            }
            logger.LogInformation("Retired access-token keys {KeyIds}", string.Join(',', retired));
        }

        if (_codec is null)
        {
            _codec = new AccessTokenCodec(keys, current.Id);
        }
        else
        {
            _codec.SetKeys(keys, current.Id);
        }
    }

    /// <summary>Adds a key now, activating after every node has had time to read it (the <c>tollgate keys rotate</c> command).</summary>
    public Task<bool> RotateNowAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        return AddKeyAsync(now, now + options.Keys.ActivationDelay, now, ct);
    }

    private Task<bool> AddKeyAsync(DateTimeOffset now, DateTimeOffset activates, DateTimeOffset unlessCreatedAfter, CancellationToken ct) =>
        store.AddAccessTokenKeyAsync(NewStoredKey(master, now, activates), unlessCreatedAfter, ct);

    /// <summary>A fresh AES-256 key as it is stored: encrypted under the master key when one is configured.</summary>
    public static StoredAccessTokenKey NewStoredKey(MasterKeys? master, DateTimeOffset now, DateTimeOffset activates)
    {
        var material = Secrets.NewAccessTokenKey();
        return master is null
            ? new StoredAccessTokenKey(0, material, null, now, activates)
            : new StoredAccessTokenKey(0, master.Protect(material, Purpose), master.CurrentId, now, activates);
    }

    private async Task<byte[]> OpenAsync(StoredAccessTokenKey row, CancellationToken ct)
    {
        if (row.Protection is null)
        {
            if (master is not null)
            {
                // Stored in the clear by an older version or before a master key was configured: encrypt it now.
                await store.ReplaceAccessTokenKeyMaterialAsync(row.Id, master.Protect(row.Material, Purpose), master.CurrentId, null, ct);
                logger.LogInformation("Access-token key {KeyId} is now encrypted under master key {MasterKeyId}", row.Id, master.CurrentId);
            }
            return row.Material;
        }
        if (master is null)
        {
            throw new TollgateConfigurationException(
                $"access-token key {row.Id} in the store is encrypted under master key {row.Protection}, but Tollgate:MasterKey is not set");
        }
        var plain = master.Unprotect(row.Material, row.Protection, Purpose)
            ?? throw new TollgateConfigurationException(
                master.Knows(row.Protection)
                    ? $"access-token key {row.Id} does not decrypt under master key {row.Protection}: the store was altered"
                    : $"access-token key {row.Id} is encrypted under master key {row.Protection}, which is neither Tollgate:MasterKey ({master.CurrentId}) nor in Tollgate:PreviousMasterKeys");
        if (row.Protection != master.CurrentId)
        {
            await store.ReplaceAccessTokenKeyMaterialAsync(row.Id, master.Protect(plain, Purpose), master.CurrentId, row.Protection, ct);
            logger.LogInformation("Access-token key {KeyId} re-encrypted from master key {Old} to {New}", row.Id, row.Protection, master.CurrentId);
        }
        return plain;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The cadence is real time; what is due is decided by the injected clock, so tests that move a fake clock
        // days ahead choose when the ring looks (RefreshAsync) instead of racing a background rotation.
        using var timer = new PeriodicTimer(options.Keys.Refresh);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await RefreshAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // The keys already loaded keep working; the next tick tries again.
                logger.LogWarning("Key ring refresh failed: {Error}", e.Message);
            }
        }
    }
}
