namespace Tollgate.Client;

/// <summary>
/// Token endpoint addresses of Amazon's Login with Amazon regions. Tollgate itself serves the same
/// path (<c>/auth/o2/token</c>) on whatever host it runs on; any absolute URL may be used instead of a preset.
/// </summary>
public static class TokenEndpoints
{
    /// <summary>North America: <c>https://api.amazon.com/auth/o2/token</c>.</summary>
    public static Uri NorthAmerica { get; } = new("https://api.amazon.com/auth/o2/token");

    /// <summary>Europe: <c>https://api.amazon.co.uk/auth/o2/token</c>.</summary>
    public static Uri Europe { get; } = new("https://api.amazon.co.uk/auth/o2/token");

    /// <summary>Far East: <c>https://api.amazon.co.jp/auth/o2/token</c>.</summary>
    public static Uri FarEast { get; } = new("https://api.amazon.co.jp/auth/o2/token");

    /// <summary>Returns the preset for a region code: <c>na</c>, <c>eu</c> or <c>fe</c> (case-insensitive).</summary>
    /// <param name="region">The region code.</param>
    /// <exception cref="ArgumentException">The code is not one of the three presets.</exception>
    public static Uri ForRegion(string region)
    {
        ArgumentNullException.ThrowIfNull(region);
        return region.ToUpperInvariant() switch
        {
            "NA" => NorthAmerica,
            "EU" => Europe,
            "FE" => FarEast,
            _ => throw new ArgumentException($"Unknown region '{region}'; expected na, eu or fe.", nameof(region)),
        };
    }
}
