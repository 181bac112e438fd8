using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Unicode;

namespace Tollgate.Server.Web;

/// <summary>
/// A fragment of HTML that is safe to send. The only way to make one is <see cref="Html"/>: the literal
/// parts of the interpolated string are our own source code, and every hole is HTML-encoded unless it
/// is already <see cref="Markup"/>. So user-controlled text (names, URLs, scopes, state) cannot become
/// markup by accident, and a reviewer checks one file instead of every page.
/// </summary>
internal sealed class Markup
{
    private static readonly HtmlEncoder Encoder = HtmlEncoder.Create(UnicodeRanges.All);

    public static readonly Markup Empty = new("");

    private Markup(string value) => Value = value;

    public string Value { get; }

    public override string ToString() => Value;

    public static Markup Html([InterpolatedStringHandlerArgument] ref Handler html) => new(html.ToStringAndClear());

    public static Markup Join(IEnumerable<Markup> parts) => new(string.Concat(parts.Select(p => p.Value)));

    public static Markup Join<T>(IEnumerable<T> items, Func<T, Markup> render) => Join(items.Select(render));

    public static Markup When(bool condition, Markup markup) => condition ? markup : Empty;

    /// <summary>Text from our own source (a style sheet, an SVG built from numbers); never pass request data here.</summary>
    internal static Markup Trusted(string html) => new(html);

    public static string Encode(string text) => Encoder.Encode(text);

    [InterpolatedStringHandler]
    public ref struct Handler
    {
        private readonly StringBuilder _builder;

        public Handler(int literalLength, int formattedCount) => _builder = new StringBuilder(literalLength + (formattedCount * 16));

        public readonly void AppendLiteral(string literal) => _builder.Append(literal);

        public readonly void AppendFormatted<T>(T value)
        {
            switch (value)
            {
                case null:
                    break;
                case Markup markup:
                    _builder.Append(markup.Value);
                    break;
                case IEnumerable<Markup> many:
                    foreach (var part in many)
                    {
                        _builder.Append(part.Value);
                    }
                    break;
                case IFormattable formattable:
                    _builder.Append(Encoder.Encode(formattable.ToString(null, CultureInfo.InvariantCulture)));
                    break;
                default:
                    _builder.Append(Encoder.Encode(value.ToString() ?? ""));
                    break;
            }
        }

        public readonly void AppendFormatted<T>(T value, string format) where T : IFormattable =>
            _builder.Append(Encoder.Encode(value.ToString(format, CultureInfo.InvariantCulture)));

        public readonly string ToStringAndClear()
        {
            string result = _builder.ToString();
            _builder.Clear();
            return result;
        }
    }
}
