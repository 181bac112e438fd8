using System.Net.Sockets;
using System.Text;

namespace Tollgate.Tests.Hardening;

/// <summary>HTTP written by hand, byte by byte, for what HttpClient refuses to send: slow and malformed requests.</summary>
internal static class RawHttp
{
    /// <summary>
    /// Sends <paramref name="head"/>, then each of <paramref name="trickle"/> after <paramref name="pause"/>, while reading;
    /// returns whatever the server answered before closing (or before <paramref name="timeout"/>).
    /// </summary>
    public static async Task<string> SendAsync(Uri server, string head, IEnumerable<string> trickle, TimeSpan pause, TimeSpan timeout)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(server.Host, server.Port);
        var stream = client.GetStream();
        using var cts = new CancellationTokenSource(timeout);
        var received = new StringBuilder();
        var reading = Task.Run(async () =>
        {
            var buffer = new byte[8192];
            try
            {
                int read;
                while ((read = await stream.ReadAsync(buffer, cts.Token)) > 0)
                {
                    received.Append(Encoding.Latin1.GetString(buffer, 0, read));
                }
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
            {
                // The server closed or reset the connection, or we gave up waiting: what arrived is the answer.
            }
        });
        try
        {
            await stream.WriteAsync(Encoding.Latin1.GetBytes(head), cts.Token);
            foreach (var piece in trickle)
            {
                await Task.Delay(pause, cts.Token);
                if (reading.IsCompleted)
                {
                    break;
                }
                await stream.WriteAsync(Encoding.Latin1.GetBytes(piece), cts.Token);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
        {
            // The server stopped listening to us, as it should.
        }
        await reading;
        return received.ToString();
    }

    /// <summary>The JSON body of a raw HTTP/1.1 response (after the blank line, without chunk framing).</summary>
    public static string Body(string response)
    {
        int blank = response.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (blank < 0)
        {
            return "";
        }
        string body = response[(blank + 4)..];
        int start = body.IndexOf('{', StringComparison.Ordinal), end = body.LastIndexOf('}');
        return start < 0 || end < start ? body : body[start..(end + 1)];
    }
}
