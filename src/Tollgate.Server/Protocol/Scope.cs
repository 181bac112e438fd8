namespace Tollgate.Server.Protocol;

/// <summary>
/// A set of scope tokens (RFC 6749 §3.3): space-delimited, case-sensitive, order-insensitive.
/// A type of its own so that a raw request string is never compared with a granted scope by accident.
/// </summary>
internal sealed class Scope
{
    /// <summary>Login with Amazon's user scopes; every security profile may request them.</summary>
    public static readonly IReadOnlySet<string> StandardUserScopes =
        new HashSet<string>(["profile", "profile:user_id", "postal_code"], StringComparer.Ordinal);

    /// <summary>Bounds the sealed access token under 2048 bytes whatever the client asks for.</summary>
    public const int MaxLength = 1024;

    private Scope(SortedSet<string> tokens)
    {
        Tokens = tokens;
        Value = string.Join(' ', tokens);
    }

    public IReadOnlySet<string> Tokens { get; }

    /// <summary>Canonical form: sorted, single spaces.</summary>
    public string Value { get; }

    public override string ToString() => Value;

    /// <summary>Parses a scope parameter, or says what is wrong with it.</summary>
    public static bool TryParse(string? raw, out Scope scope, out string? problem)
    {
        scope = null!;
        if (string.IsNullOrWhiteSpace(raw))
        {
            problem = "scope is empty";
            return false;
        }
        if (raw.Length > MaxLength)
        {
            problem = $"scope is longer than {MaxLength} characters";
            return false;
        }
        var tokens = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var token in raw.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            // scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): printable ASCII without '"' and '\'.
            foreach (char c in token)
            {
                if (c < 0x21 || c > 0x7E || c == '"' || c == '\\')
                {
                    problem = $"scope '{token}' contains a character that scopes may not contain";
                    return false;
                }
            }
            tokens.Add(token);
        }
        scope = new Scope(tokens);
        problem = null;
        return true;
    }

    /// <summary>The tokens of this scope that are not in <paramref name="allowed"/>.</summary>
    public IEnumerable<string> Outside(Func<string, bool> allowed) => Tokens.Where(t => !allowed(t));
}
