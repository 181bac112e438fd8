using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace Tollgate.Server.Protocol;

/// <summary>
/// Reads a token request body, form-encoded (RFC 6749 §4.1.3) or JSON (what Amazon's own SP-API
/// SDKs send), into a <see cref="TokenRequest"/>, refusing anything malformed with a description
/// a human can act on. The body is read with a hard size cap into a pooled buffer and parsed
/// in place, so a hostile body costs at most the cap and never a 500.
/// </summary>
internal static class TokenRequestReader
{
    public static async ValueTask<(TokenRequest? Request, OAuthError? Error)> ReadAsync(
        HttpRequest http, int maxBytes, CancellationToken ct)
    {
        var kind = ClassifyContentType(http.ContentType, out var contentTypeError);
        if (contentTypeError is not null)
        {
            return (null, contentTypeError);
        }
        if (http.ContentLength > maxBytes)
        {
            return (null, OAuthError.TooLarge(maxBytes));
        }

        byte[] buffer = ArrayPool<byte>.Shared.Rent(maxBytes + 1);
        try
        {
            int length = 0;
            while (true)
            {
                int read = await http.Body.ReadAsync(buffer.AsMemory(length, maxBytes + 1 - length), ct);
                if (read == 0)
                {
                    break;
                }
                length += read;
                if (length > maxBytes)
                {
                    return (null, OAuthError.TooLarge(maxBytes));
                }
            }

            var request = new TokenRequest();
            var body = buffer.AsSpan(0, length);
            var error = kind switch
            {
                BodyKind.Json => ParseJson(body, request),
                BodyKind.Form => ParseForm(body, request),
                _ => length == 0
                    ? null
                    : OAuthError.InvalidRequest("The request has a body but no Content-Type; send application/x-www-form-urlencoded."),
            };
            return error is null ? (request, null) : (null, error);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private enum BodyKind
    {
        None,
        Form,
        Json,
    }

    private static BodyKind ClassifyContentType(string? contentType, out OAuthError? error)
    {
        error = null;
        if (string.IsNullOrEmpty(contentType))
        {
            return BodyKind.None;
        }
        // What nearly every client sends, recognised without parsing (the parser allocates on every request).
        if (contentType.Equals("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase))
        {
            return BodyKind.Form;
        }
        if (!MediaTypeHeaderValue.TryParse(contentType, out var media))
        {
            error = OAuthError.InvalidRequest($"The Content-Type '{Printable(contentType)}' cannot be parsed; send application/x-www-form-urlencoded.");
            return BodyKind.None;
        }
        if (media.Charset.HasValue && !media.Charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase))
        {
            error = OAuthError.InvalidRequest($"The charset '{Printable(media.Charset.Value)}' is not supported; token requests are UTF-8.");
            return BodyKind.None;
        }
        if (media.MediaType.Equals("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase))
        {
            return BodyKind.Form;
        }
        if (media.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase))
        {
            return BodyKind.Json;
        }
        error = OAuthError.InvalidRequest(
            $"The Content-Type '{Printable(media.MediaType.Value)}' is not supported; send application/x-www-form-urlencoded (or application/json).");
        return BodyKind.None;
    }

    /// <summary>application/x-www-form-urlencoded (WHATWG URL §5.1): pairs split on '&amp;' and '=', '+' is a space, %XX a byte.</summary>
    private static OAuthError? ParseForm(Span<byte> body, TokenRequest request)
    {
        Span<byte> name = stackalloc byte[32];
        while (!body.IsEmpty)
        {
            int amp = body.IndexOf((byte)'&');
            var pair = amp < 0 ? body : body[..amp];
            body = amp < 0 ? [] : body[(amp + 1)..];
            if (pair.IsEmpty)
            {
                continue;
            }
            int eq = pair.IndexOf((byte)'=');
            var rawName = eq < 0 ? pair : pair[..eq];
            var rawValue = eq < 0 ? [] : pair[(eq + 1)..];

            // Names longer than any we know are someone else's parameter: ignore them unread.
            if (rawName.Length > 3 * name.Length || !TryPercentDecode(rawName, name, out int nameLength))
            {
                continue;
            }
            if (TokenRequest.Lookup(name[..nameLength]) is not { } parameter)
            {
                continue;
            }
            // Decoding never lengthens, so the value decodes in place over its own encoded bytes.
            if (!TryPercentDecode(rawValue, rawValue, out int valueLength))
            {
                return OAuthError.InvalidRequest(
                    $"The parameter {TokenRequest.WireName(parameter)} has malformed percent-encoding; encode '%' as %25 and '|' as %7C.");
            }
            var value = rawValue[..valueLength];
            if (!Utf8.IsValid(value))
            {
                return OAuthError.InvalidRequest($"The parameter {TokenRequest.WireName(parameter)} is not valid UTF-8.");
            }
            if (!request.TrySet(parameter, Encoding.UTF8.GetString(value)))
            {
                return Repeated(parameter);
            }
        }
        return null;
    }

    private static bool TryPercentDecode(ReadOnlySpan<byte> source, Span<byte> destination, out int written)
    {
        written = 0;
        for (int i = 0; i < source.Length; i++)
        {
            if (written >= destination.Length)
            {
                return false;
            }
            byte b = source[i];
            if (b == (byte)'+')
            {
                destination[written++] = (byte)' ';
            }
            else if (b == (byte)'%')
            {
                if (i + 2 >= source.Length)
                {
                    return false;
                }
                int hi = HexValue(source[i + 1]), lo = HexValue(source[i + 2]);
                if (hi < 0 || lo < 0)
                {
                    return false;
                }
                destination[written++] = (byte)((hi << 4) | lo);
                i += 2;
            }
            else
            {
                destination[written++] = b;
            }
        }
        return true;
    }

    private static int HexValue(byte c) => c switch
    {
        >= (byte)'0' and <= (byte)'9' => c - '0',
        >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
        _ => -1,
    };

    /// <summary>A JSON object whose members are the same parameters, each a string.</summary>
    private static OAuthError? ParseJson(ReadOnlySpan<byte> body, TokenRequest request)
    {
        var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 16 });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return OAuthError.InvalidRequest("The JSON body must be an object of string parameters, like {\"grant_type\":\"refresh_token\",...}.");
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                TokenParameter? parameter = reader.ValueIsEscaped
                    ? TokenRequest.Lookup(Encoding.UTF8.GetBytes(reader.GetString()!))
                    : TokenRequest.Lookup(reader.ValueSpan);
                reader.Read();
                if (parameter is not { } known)
                {
                    reader.Skip();
                    continue;
                }
                string value;
                if (reader.TokenType == JsonTokenType.String)
                {
                    value = reader.GetString()!;
                }
                else if (reader.TokenType == JsonTokenType.Null)
                {
                    value = "";
                }
                else
                {
                    return OAuthError.InvalidRequest($"The parameter {TokenRequest.WireName(known)} must be a JSON string.");
                }
                if (!request.TrySet(known, value))
                {
                    return Repeated(known);
                }
            }
            if (reader.TokenType != JsonTokenType.EndObject || reader.Read())
            {
                return OAuthError.InvalidRequest("The JSON body is malformed: expected one object and nothing after it.");
            }
            return null;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // Malformed JSON or invalid UTF-8 inside a string: the reader's position is useful, its text is not secret.
            return OAuthError.InvalidRequest($"The JSON body is malformed (at byte {reader.BytesConsumed}).");
        }
    }

    private static OAuthError Repeated(TokenParameter parameter) =>
        OAuthError.InvalidRequest($"The parameter {TokenRequest.WireName(parameter)} appears more than once; send each parameter once.");

    /// <summary>Echo client-supplied text only as short printable ASCII, so descriptions cannot carry injected content.</summary>
    internal static string Printable(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return "";
        }
        var builder = new StringBuilder(Math.Min(text.Length, 64));
        foreach (char c in text.AsSpan(0, Math.Min(text.Length, 64)))
        {
            builder.Append(c is >= ' ' and <= '~' && c != '"' && c != '\\' ? c : '?');
        }
        if (text.Length > 64)
        {
            builder.Append("...");
        }
        return builder.ToString();
    }
}
