using System.Globalization;
using System.Text;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Web;

/// <summary>
/// The console's "issued / refused per hour" chart: an inline SVG drawn from numbers only (no script,
/// no library, nothing fetched), with a table of the same data for screen readers and keyboard users.
/// </summary>
internal static class ActivityChart
{
    public const int Hours = 24;
    private const int Width = 720;
    private const int Height = 200;
    private const int Bottom = 176;
    private const int Left = 36;

    public static Markup Render(IReadOnlyList<TokenActivityHour> activity, DateTimeOffset now)
    {
        var firstHour = Truncate(now).AddHours(-(Hours - 1));
        var byHour = activity.ToDictionary(a => a.Hour);
        var hours = Enumerable.Range(0, Hours).Select(i => firstHour.AddHours(i))
            .Select(h => byHour.TryGetValue(h, out var a) ? a : new TokenActivityHour(h, 0, 0)).ToList();
        long max = Math.Max(1, hours.Max(h => Math.Max(h.Issued, h.Refused)));
        long issuedTotal = hours.Sum(h => h.Issued), refusedTotal = hours.Sum(h => h.Refused);

        var svg = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        double slot = (Width - Left) / (double)Hours;
        double bar = Math.Floor(slot / 2 - 2);
        svg.Append(inv, $"<svg viewBox=\"0 0 {Width} {Height}\" role=\"img\" aria-labelledby=\"chart-title\" xmlns=\"http://www.w3.org/2000/svg\">");
        svg.Append(inv, $"<title id=\"chart-title\">Token requests in the last 24 hours: {issuedTotal} issued, {refusedTotal} refused</title>");
        svg.Append(inv, $"<line x1=\"{Left}\" y1=\"{Bottom}\" x2=\"{Width}\" y2=\"{Bottom}\" stroke=\"#7b8594\" stroke-width=\"1\"/>");
        svg.Append(inv, $"<text x=\"{Left - 6}\" y=\"14\" text-anchor=\"end\" font-size=\"11\" fill=\"#4a5563\">{max}</text>");
        svg.Append(inv, $"<text x=\"{Left - 6}\" y=\"{Bottom}\" text-anchor=\"end\" font-size=\"11\" fill=\"#4a5563\">0</text>");
        for (int i = 0; i < hours.Count; i++)
        {
            var h = hours[i];
            double x = Left + i * slot + 1;
            double issuedHeight = (Bottom - 8) * h.Issued / (double)max;
            double refusedHeight = (Bottom - 8) * h.Refused / (double)max;
            svg.Append(inv, $"<g><title>{h.Hour:HH}:00 UTC: {h.Issued} issued, {h.Refused} refused</title>");
            svg.Append(inv, $"<rect x=\"{x:0.#}\" y=\"{Bottom - issuedHeight:0.#}\" width=\"{bar}\" height=\"{issuedHeight:0.#}\" fill=\"#1a56a0\"/>");
            svg.Append(inv, $"<rect x=\"{x + bar + 1:0.#}\" y=\"{Bottom - refusedHeight:0.#}\" width=\"{bar}\" height=\"{refusedHeight:0.#}\" fill=\"#c4314b\"/></g>");
            if (i % 6 == 0 || i == Hours - 1)
            {
                svg.Append(inv, $"<text x=\"{x + bar:0.#}\" y=\"{Bottom + 16}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#4a5563\">{h.Hour:HH}:00</text>");
            }
        }
        svg.Append("</svg>");

        var rows = hours.Where(h => h.Issued + h.Refused > 0).ToList();
        return Markup.Html($"""
            <div class="chart">{Markup.Trusted(svg.ToString())}</div>
            <p class="legend"><span><span class="swatch sw-issued"></span>Issued: {issuedTotal}</span><span><span class="swatch sw-refused"></span>Refused: {refusedTotal}</span><span>Hours in UTC</span></p>
            <details><summary>Show as a table</summary>
            {(rows.Count == 0 ? Markup.Html($"<p>No token requests in the last 24 hours.</p>") : Markup.Html($"""
                <div class="table-wrap"><table><thead><tr><th scope="col">Hour (UTC)</th><th scope="col">Issued</th><th scope="col">Refused</th></tr></thead>
                <tbody>{Markup.Join(rows, r => Markup.Html($"<tr><td>{r.Hour.ToString("yyyy-MM-dd HH:00", CultureInfo.InvariantCulture)}</td><td>{r.Issued}</td><td>{r.Refused}</td></tr>"))}</tbody></table></div>
                """))}
            </details>
            """);
    }

    public static DateTimeOffset Truncate(DateTimeOffset time) =>
        new(time.UtcDateTime.Year, time.UtcDateTime.Month, time.UtcDateTime.Day, time.UtcDateTime.Hour, 0, 0, TimeSpan.Zero);
}
