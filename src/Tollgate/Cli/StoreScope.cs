using Tollgate.Server;
using Tollgate.Server.Storage;

namespace Tollgate.Cli;

/// <summary>Opens and migrates the store named by <c>--db</c> for one command, and maps failures to exit codes.</summary>
internal static class StoreScope
{
    public static async Task<int> RunAsync(string? db, Func<ITokenStore, Task<int>> action)
    {
        var location = StoreLocation.Resolve(db);
        var store = StoreLocation.TryOpen(location, out var problem);
        if (store is null)
        {
            return await TollgateCli.FailAsync(TollgateCli.Usage, problem!);
        }
        await using (store)
        {
            try
            {
                await store.MigrateAsync(CancellationToken.None);
                return await action(store);
            }
            catch (Exception e) when (e is System.Data.Common.DbException or IOException or UnauthorizedAccessException
                or Server.Storage.Sqlite.StoreSchemaException)
            {
                return await TollgateCli.FailAsync(TollgateCli.Failure, $"store {StoreLocation.Describe(location)}: {e.Message}");
            }
            catch (TollgateConfigurationException e)
            {
                return await TollgateCli.FailAsync(TollgateCli.Failure, $"invalid configuration: {e.Message}");
            }
        }
    }
}
