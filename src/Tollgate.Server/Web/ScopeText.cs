namespace Tollgate.Server.Web;

/// <summary>What each scope lets an application do, in the words a person reads on the consent page.</summary>
internal static class ScopeText
{
    public static string Describe(string scope) => scope switch
    {
        "profile" => "Your name, email address and account id",
        "profile:user_id" => "Your account id (not your name or email)",
        "postal_code" => "The postal code in your profile",
        _ => $"Act for you with the permission “{scope}”",
    };

    public static Markup List(IEnumerable<string> scopes) => Markup.Html($"""
        <ul class="scopes">{Markup.Join(scopes, s => Markup.Html($"<li>{Describe(s)} <span class=\"muted mono\">({s})</span></li>"))}</ul>
        """);

    /// <summary>Where the browser goes next, as a person would recognise it: the host, or the app's own scheme.</summary>
    public static string Destination(string redirectUri) =>
        Uri.TryCreate(redirectUri, UriKind.Absolute, out var uri)
            ? uri.Scheme is "http" or "https" ? uri.Authority : uri.Scheme + ":"
            : redirectUri;
}
