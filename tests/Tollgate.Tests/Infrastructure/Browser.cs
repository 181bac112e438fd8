using Microsoft.Playwright;

namespace Tollgate.Tests.Infrastructure;

/// <summary>
/// One headless Chromium (Debian's, at /usr/bin/chromium; .ci/run installs it) shared by the browser
/// tests, driven by Playwright. Each test gets its own context: its own cookies, like a fresh profile.
/// </summary>
public sealed class BrowserFixture : IAsyncLifetime
{
    public const string ChromiumPath = "/usr/bin/chromium";

    private IPlaywright? _playwright;

    public IBrowser Browser { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Assert.True(File.Exists(ChromiumPath), $"{ChromiumPath} is missing: apt-get install -y chromium (.ci/run does this)");
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new()
        {
            ExecutablePath = ChromiumPath,
            Headless = true,
            // Without these Chromium keeps trying to reach the internet.
            Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        });
    }

    public async Task DisposeAsync()
    {
        await Browser.DisposeAsync();
        _playwright?.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class BrowserCollection : ICollectionFixture<BrowserFixture>
{
    public const string Name = "browser";
}

/// <summary>
/// Screenshots of each page at phone and desktop widths, written to <c>artifacts/screenshots/</c> at the
/// repository root (or <c>TOLLGATE_SCREENSHOTS</c>); <c>docs/screenshots/</c> holds committed copies.
/// </summary>
internal static class Screenshots
{
    public static readonly string Directory = Environment.GetEnvironmentVariable("TOLLGATE_SCREENSHOTS") is { Length: > 0 } configured
        ? configured
        : Path.Combine(RepositoryRoot(), "artifacts", "screenshots");

    public static async Task CaptureAsync(IPage page, string name)
    {
        System.IO.Directory.CreateDirectory(Directory);
        var original = page.ViewportSize;
        foreach (var (suffix, width, height) in new[] { ("phone", 390, 844), ("desktop", 1280, 800) })
        {
            await page.SetViewportSizeAsync(width, height);
            await page.ScreenshotAsync(new() { Path = Path.Combine(Directory, $"{name}-{suffix}.png"), FullPage = true });
        }
        if (original is not null)
        {
            await page.SetViewportSizeAsync(original.Width, original.Height);
        }
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Tollgate.sln")))
            {
                return dir.FullName;
            }
        }
        return Path.GetTempPath();
    }
}
