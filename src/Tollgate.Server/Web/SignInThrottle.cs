using System.Net;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Web;

/// <summary>
/// Brute-force defence for sign-in: failures are counted per account and per client address in the
/// shared store (so every node sees them), in fixed windows. Past the limit, sign-in is refused with a
/// clear message until the window ends, without even checking the password.
/// </summary>
/// <remarks>
/// Per account stops guessing one person's password from many addresses; per address stops one
/// machine trying many accounts. A success clears the account's count but not the address's, so an
/// attacker cannot reset their budget by signing in to an account of their own. Unknown emails count
/// like real ones, so the answers do not reveal which accounts exist. IPv6 clients are counted per
/// /64, the block one subscriber usually gets.
/// </remarks>
internal sealed class SignInThrottle(ITokenStore store, TimeProvider time, TollgateOptions options)
{
    /// <summary>How long sign-in stays paused for this account or address; null when it may proceed.</summary>
    public async Task<TimeSpan?> PausedForAsync(string email, IPAddress? address, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        TimeSpan? longest = null;
        foreach (var (key, limit) in Keys(email, address))
        {
            var failures = await store.GetSignInFailuresAsync(key, now - options.SignInThrottleWindow, ct);
            if (failures.Count >= limit)
            {
                var remaining = failures.WindowStart + options.SignInThrottleWindow - now;
                longest = longest is null || remaining > longest ? remaining : longest;
            }
        }
        return longest;
    }

    public async Task RecordFailureAsync(string email, IPAddress? address, CancellationToken ct)
    {
        foreach (var (key, _) in Keys(email, address))
        {
            await store.RecordSignInFailureAsync(key, time.GetUtcNow(), options.SignInThrottleWindow, ct);
        }
    }

    public Task RecordSuccessAsync(string email, CancellationToken ct) => store.ClearSignInFailuresAsync(AccountKey(email), ct);

    private IEnumerable<(string Key, int Limit)> Keys(string email, IPAddress? address)
    {
        yield return (AccountKey(email), options.SignInMaxFailuresPerAccount);
        if (address is not null)
        {
            yield return ("address:" + Block(address), options.SignInMaxFailuresPerAddress);
        }
    }

    private static string AccountKey(string email) => "account:" + email.Trim().ToUpperInvariant();

    private static string Block(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            return address.MapToIPv4().ToString();
        }
        if (address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
        {
            return address.ToString();
        }
        var bytes = address.GetAddressBytes();
        Array.Clear(bytes, 8, 8);
        return new IPAddress(bytes) + "/64";
    }
}
