using System.Xml.Linq;
using Microsoft.AspNetCore.DataProtection.Repositories;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Web;

/// <summary>
/// ASP.NET Core Data Protection keeps its key ring here, in the shared store, instead of a folder on
/// one machine: anti-forgery tokens issued before a restart, or by another node, still validate.
/// </summary>
/// <remarks>
/// <see cref="IXmlRepository"/> is synchronous; Data Protection calls it only when it (re)loads the key
/// ring (at start, and about once a day) or creates a key (every 90 days), never per request, so
/// blocking on the store here costs nothing that matters.
/// The keys are stored unencrypted, like the access-token keys: whoever can read the store can already
/// read everything these keys protect, so encrypting them with a key kept beside them would add nothing.
/// </remarks>
internal sealed class StoreXmlRepository(ITokenStore store, TimeProvider time) : IXmlRepository
{
    public IReadOnlyCollection<XElement> GetAllElements() =>
        [.. store.ListDataProtectionKeysAsync(CancellationToken.None).GetAwaiter().GetResult().Select(x => XElement.Parse(x))];

    public void StoreElement(XElement element, string friendlyName) =>
        store.AddDataProtectionKeyAsync(friendlyName, element.ToString(SaveOptions.DisableFormatting), time.GetUtcNow(), CancellationToken.None)
            .GetAwaiter().GetResult();
}
