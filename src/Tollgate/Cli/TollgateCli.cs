using System.CommandLine;

namespace Tollgate.Cli;

internal static class TollgateCli
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int Usage = 2;

    public static async Task<int> RunAsync(string[] args)
    {
        var root = new RootCommand("Tollgate: a Login with Amazon compatible OAuth 2.0 token service.");
        root.Add(ServeCommand.Create());
        root.Add(AdminCommands.Profile());
        root.Add(AdminCommands.User());
        root.Add(AdminCommands.Code());
        root.Add(AdminCommands.Db());
        root.Add(OpsCommands.Audit());
        root.Add(OpsCommands.Keys());
        foreach (var command in ClientCommands.Create())
        {
            root.Add(command);
        }

        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            await Console.Error.WriteLineAsync($"tollgate: {OneLine(parsed.Errors[0].Message)} (see tollgate --help)");
            return Usage;
        }
        return await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
    }

    /// <summary>The <c>--db</c> option every command takes.</summary>
    public static Option<string?> DbOption() => new("--db")
    {
        Description = "Store: sqlite:PATH or postgres:CONNECTION-STRING (env TOLLGATE_DB; default sqlite:tollgate.db)",
    };

    public static async Task<int> FailAsync(int code, string reason)
    {
        await Console.Error.WriteLineAsync($"tollgate: {OneLine(reason)}");
        return code;
    }

    /// <summary>The contract promises one line on stderr, whatever the message looked like.</summary>
    private static string OneLine(string text) =>
        string.Join(' ', text.Split(['\r', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
