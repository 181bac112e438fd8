namespace Tollgate.Client;

/// <summary>
/// A mutable secrets store for one set of <see cref="StoredCredentials"/>. Implementations must replace the stored
/// value atomically (a reader sees the old or the new value, never a mix or nothing) and durably (a successful
/// <see cref="WriteAsync"/> survives a crash).
/// </summary>
public interface IRefreshTokenStore
{
    /// <summary>Reads the stored credentials.</summary>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The credentials, or <see langword="null"/> when nothing is stored.</returns>
    /// <exception cref="TokenStoreException">The stored data is corrupt, foreign, or cannot be decrypted.</exception>
    ValueTask<StoredCredentials?> ReadAsync(CancellationToken cancellationToken = default);

    /// <summary>Replaces the stored credentials atomically and durably.</summary>
    /// <param name="credentials">The new credentials.</param>
    /// <param name="cancellationToken">Cancels the write before it is committed.</param>
    /// <exception cref="TokenStoreException">The existing data is corrupt or foreign; it is left as it is.</exception>
    ValueTask WriteAsync(StoredCredentials credentials, CancellationToken cancellationToken = default);

    /// <summary>Forgets the stored credentials.</summary>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns><see langword="true"/> when something was removed.</returns>
    ValueTask<bool> DeleteAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Takes the store's exclusive lock, shared by every thread and process that uses the same store, so that only
    /// one of them refreshes at a time. Dispose the result to release it; a crashed holder releases it too.
    /// </summary>
    /// <param name="timeout">How long to wait for the lock.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="TimeoutException">The lock was not acquired in time.</exception>
    ValueTask<IAsyncDisposable> AcquireLockAsync(TimeSpan timeout, CancellationToken cancellationToken = default);
}
