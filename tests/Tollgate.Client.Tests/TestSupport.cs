namespace Tollgate.Client.Tests;

internal sealed class TempDirectory : IDisposable
{
    public TempDirectory() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "tollgate-client-tests", Guid.NewGuid().ToString("N"));

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

internal static class Fast
{
    /// <summary>Retry settings that keep failing tests short.</summary>
    public static TokenRetryOptions Retry => new() { MaxRetryAttempts = 4, BaseDelay = TimeSpan.FromMilliseconds(20), MaxRetryAfter = TimeSpan.FromSeconds(5) };

    public static StoredCredentials Credentials(FakeTokenServer server, string refreshToken) => new()
    {
        TokenEndpoint = server.TokenEndpoint,
        ClientId = FakeTokenServer.ClientId,
        ClientSecret = FakeTokenServer.ClientSecret,
        RefreshToken = refreshToken,
    };
}
