namespace Tollgate.Server.Web;

/// <summary>
/// Where a page may send a browser after sign-in: a path on this site, never another site. Anything
/// else becomes the home page, so <c>/signin?return=https://evil.example</c> cannot be an open redirect.
/// </summary>
internal static class LocalUrl
{
    public const string Home = "/apps";

    public static string Sanitize(string? value)
    {
        // "//host" and "/\host" are network-path references that browsers resolve to another host;
        // control characters (tab, newline) are stripped by browsers and could turn "/\t/host" into "//host".
        if (string.IsNullOrEmpty(value) || value.Length > 4096 || value[0] != '/'
            || value.StartsWith("//", StringComparison.Ordinal) || value.Contains('\\', StringComparison.Ordinal)
            || value.Any(char.IsControl) || !Uri.TryCreate(value, UriKind.Relative, out _))
        {
            return Home;
        }
        return value;
    }
}
