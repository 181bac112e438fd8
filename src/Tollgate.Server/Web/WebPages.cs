using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Tollgate.Server.Endpoints;
using Tollgate.Server.Grants;
using Tollgate.Server.Storage;

namespace Tollgate.Server.Web;

/// <summary>The people's pages: sign-in, consent (<c>/ap/oa</c>), "Your apps", the developer console and device codes.</summary>
internal static class WebPages
{
    public static void AddWebPages(this IServiceCollection services, ITokenStore store, TimeProvider time)
    {
        // The key ring lives in the shared store, so anti-forgery tokens survive restarts and work on every node.
        services.AddDataProtection()
            .SetApplicationName("Tollgate")
            .AddKeyManagementOptions(o => o.XmlRepository = new StoreXmlRepository(store, time));
        services.AddAntiforgery(o =>
        {
            o.FormFieldName = WebRequest.CsrfFieldName;
            o.HeaderName = null;
            o.Cookie.Name = "tollgate_csrf";
            o.Cookie.HttpOnly = true;
            o.Cookie.SameSite = SameSiteMode.Strict;
            o.Cookie.SecurePolicy = Microsoft.AspNetCore.Http.CookieSecurePolicy.SameAsRequest;
            // Layout sends X-Frame-Options: DENY on every page itself.
            o.SuppressXFrameOptionsHeader = true;
        });
        services.AddSingleton<WebSessions>();
        services.AddSingleton<SignInThrottle>();
        services.AddSingleton<SignInPages>();
        services.AddSingleton<AuthorizePages>();
        services.AddSingleton<AppsPages>();
        services.AddSingleton<ConsolePages>();
        services.AddSingleton<DevicePages>();
        services.AddSingleton<CodePairEndpoint>();
        services.AddSingleton<DeviceCodeGrant>();
        services.AddSingleton<IGrant>(sp => sp.GetRequiredService<DeviceCodeGrant>());
        services.AddSingleton<TokenActivity>();
        services.AddHostedService(sp => sp.GetRequiredService<TokenActivity>());
    }

    public static void MapWebPages(WebApplication app)
    {
        var services = app.Services;
        var signIn = services.GetRequiredService<SignInPages>();
        var authorize = services.GetRequiredService<AuthorizePages>();
        var apps = services.GetRequiredService<AppsPages>();
        var console = services.GetRequiredService<ConsolePages>();
        var device = services.GetRequiredService<DevicePages>();
        var codePair = services.GetRequiredService<CodePairEndpoint>();

        app.MapGet("/", http =>
        {
            Layout.Redirect(http, LocalUrl.Home, afterPost: false);
            return Task.CompletedTask;
        });
        app.MapGet("/signin", signIn.ShowAsync);
        app.MapPost("/signin", signIn.SubmitAsync);
        app.MapPost("/signout", signIn.SignOutAsync);

        app.MapGet("/ap/oa", authorize.ShowAsync);
        app.MapPost("/ap/oa", authorize.DecideAsync);

        app.MapGet("/apps", apps.ShowAsync);
        app.MapPost("/apps/remove", apps.RemoveAsync);

        app.MapGet("/console", console.ListAsync);
        app.MapPost("/console/profiles", console.CreateAsync);
        app.MapGet("/console/profiles/{clientId}", (HttpContext http, string clientId) => console.ShowAsync(http, clientId));
        app.MapPost("/console/profiles/{clientId}/return-urls", (HttpContext http, string clientId) => console.AddReturnUrlAsync(http, clientId));
        app.MapPost("/console/profiles/{clientId}/return-urls/remove", (HttpContext http, string clientId) => console.RemoveReturnUrlAsync(http, clientId));
        app.MapPost("/console/profiles/{clientId}/rotate-secret", (HttpContext http, string clientId) => console.RotateSecretAsync(http, clientId));
        app.MapPost("/console/profiles/{clientId}/delete", (HttpContext http, string clientId) => console.DeleteAsync(http, clientId));

        app.MapGet("/device", device.ShowAsync);
        app.MapPost("/device", device.EnterCodeAsync);
        app.MapPost("/device/decide", device.DecideAsync);

        app.MapPost("/auth/o2/create/codepair", codePair.HandleAsync);
    }
}
