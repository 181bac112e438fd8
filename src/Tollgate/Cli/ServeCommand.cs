using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Tollgate.Server;

namespace Tollgate.Cli;

/// <summary><c>tollgate serve [--urls URL] [--db DB]</c></summary>
internal static class ServeCommand
{
    public const string DefaultUrls = "http://127.0.0.1:5080";

    public static Command Create()
    {
        var urls = new Option<string>("--urls")
        {
            Description = $"Addresses to listen on, separated by ';' (default {DefaultUrls}; port 0 picks a free one)",
            DefaultValueFactory = _ => DefaultUrls,
        };
        var db = TollgateCli.DbOption();
        var command = new Command("serve", "Run the token service") { urls, db };
        command.SetAction((parsed, ct) => StoreScope.RunAsync(parsed.GetValue(db), async store =>
        {
            WebApplication app;
            try
            {
                app = await TollgateServer.BuildAsync([], store, TimeProvider.System, ct: ct);
            }
            catch (InvalidOperationException e) when (e.Message.StartsWith("invalid configuration", StringComparison.Ordinal))
            {
                return await TollgateCli.FailAsync(TollgateCli.Failure, e.Message);
            }
            foreach (var url in parsed.GetValue(urls)!.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                app.Urls.Add(url);
            }
            try
            {
                await app.StartAsync(ct);
            }
            catch (IOException e)
            {
                return await TollgateCli.FailAsync(TollgateCli.Failure, $"cannot listen: {e.Message}");
            }
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
            // Scripts and tests read this line to learn the port when they asked for port 0.
            Console.WriteLine($"tollgate: listening on {string.Join(' ', addresses)}");
            await app.WaitForShutdownAsync(ct);
            await app.DisposeAsync();
            return TollgateCli.Success;
        }));
        return command;
    }
}
