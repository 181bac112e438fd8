// The ceiling: the cheapest possible token endpoint on this machine (parse the form, write a fixed
// JSON answer). Nothing real can be faster; bench/run.sh takes every ratio against it, measured in
// the same run by the same load tool. The POST endpoint is byte for byte the one of
// ../shared/bench/ceiling; the GET is its tokeninfo twin (parse the query, write fixed JSON).
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
var app = builder.Build();
app.MapPost("/auth/o2/token", async (HttpRequest req) =>
{
    var form = await req.ReadFormAsync();
    return Results.Json(new { access_token = "Atza|x", refresh_token = form["refresh_token"].ToString(), token_type = "bearer", expires_in = 3600 });
});
app.MapGet("/auth/o2/tokeninfo", (HttpRequest req) =>
    Results.Json(new { iss = "x", aud = req.Query["access_token"].ToString().Length.ToString(System.Globalization.CultureInfo.InvariantCulture), exp = 3600 }));
await app.StartAsync();
// bench/run.sh starts it on port 0 and reads the port from this line.
Console.WriteLine($"ceiling: listening on {string.Join(' ', app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses)}");
await app.WaitForShutdownAsync();
