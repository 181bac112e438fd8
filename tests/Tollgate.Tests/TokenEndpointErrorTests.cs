using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests;

/// <summary>Every row of PROTOCOL.md's error table, through real HTTP, and that a refused request changes nothing.</summary>
public sealed class TokenEndpointErrorTests
{
    [Theory, Stores]
    public async Task A_request_without_grant_type_is_invalid_request(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();

        var reply = await host.PostTokenAsync(TollgateHost.WithClient(profile, ("code", "abc")));

        reply.AssertError(HttpStatusCode.BadRequest, "invalid_request");
        Assert.Contains("grant_type", reply.Description, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task An_unknown_grant_type_is_unsupported_grant_type(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();

        var reply = await host.PostTokenAsync(TollgateHost.WithClient(profile, ("grant_type", "password"), ("username", "u")));

        reply.AssertError(HttpStatusCode.BadRequest, "unsupported_grant_type");
        Assert.StartsWith("The authorization grant type is not supported by the authorization server", reply.Description, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task A_request_without_client_credentials_is_invalid_client_and_names_client_id(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);

        var reply = await host.PostTokenAsync(("grant_type", "authorization_code"), ("code", "ANxuOkcwmzUHvimjMTAX"));

        reply.AssertError(HttpStatusCode.Unauthorized, "invalid_client");
        Assert.Contains("client_id is missing", reply.Description, StringComparison.Ordinal);
        Assert.False(reply.Headers.Contains("WWW-Authenticate"));
    }

    [Theory, Stores]
    public async Task A_wrong_client_secret_is_invalid_client_and_changes_nothing(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();
        var user = await host.CreateUserAsync();
        string code = await host.IssueCodeAsync(profile, user);
        string before = host.Snapshot();

        var reply = await host.PostTokenAsync(("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl),
            ("client_id", profile.ClientId), ("client_secret", profile.ClientSecret + "x"));

        reply.AssertError(HttpStatusCode.Unauthorized, "invalid_client");
        Assert.Equal(before, host.Snapshot());
        var retry = await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", TollgateHost.ReturnUrl)));
        Assert.Equal(HttpStatusCode.OK, retry.Status);
    }

    [Theory, Stores]
    public async Task An_unknown_client_id_is_invalid_client(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);

        var reply = await host.PostTokenAsync(("grant_type", "client_credentials"), ("scope", "x"),
            ("client_id", "amzn1.application-oa2-client.00000000000000000000000000000000"), ("client_secret", new string('a', 64)));

        reply.AssertError(HttpStatusCode.Unauthorized, "invalid_client");
    }

    [Theory, Stores]
    public async Task A_failed_Basic_authentication_carries_a_Basic_challenge(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(scopes: ["videocentral::reporting"]);
        var basic = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{profile.ClientId}:wrong-secret")));

        var reply = await host.PostTokenAsync([("grant_type", "client_credentials"), ("scope", "videocentral::reporting")], basic);

        reply.AssertError(HttpStatusCode.Unauthorized, "invalid_client");
        Assert.StartsWith("Basic", reply.Headers.WwwAuthenticate.Single().Scheme, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task Credentials_in_both_the_header_and_the_body_are_invalid_request(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(scopes: ["videocentral::reporting"]);
        var basic = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{profile.ClientId}:{profile.ClientSecret}")));

        var reply = await host.PostTokenAsync(
            TollgateHost.WithClient(profile, ("grant_type", "client_credentials"), ("scope", "videocentral::reporting")), basic);

        reply.AssertError(HttpStatusCode.BadRequest, "invalid_request");
    }

    [Theory, Stores]
    public async Task Two_different_client_ids_are_invalid_request(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(scopes: ["videocentral::reporting"]);
        var other = await host.CreateProfileAsync(scopes: ["videocentral::reporting"]);
        var basic = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{profile.ClientId}:{profile.ClientSecret}")));

        var reply = await host.PostTokenAsync(
            [("grant_type", "client_credentials"), ("scope", "videocentral::reporting"), ("client_id", other.ClientId)], basic);

        reply.AssertError(HttpStatusCode.BadRequest, "invalid_request");
        Assert.Contains("differs", reply.Description, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task An_unknown_code_is_invalid_grant_in_Amazons_words(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync();

        var reply = await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "authorization_code"), ("code", "ANxuOkcwmzUHvimjMTAX"), ("redirect_uri", TollgateHost.ReturnUrl)));

        reply.AssertError(HttpStatusCode.BadRequest, "invalid_grant");
        Assert.StartsWith("The request has an invalid grant parameter : code", reply.Description, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task A_public_client_asking_for_client_credentials_is_unauthorized_client(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(isPublic: true, scopes: ["videocentral::reporting"]);

        var reply = await host.PostTokenAsync(
            ("grant_type", "client_credentials"), ("scope", "videocentral::reporting"), ("client_id", profile.ClientId));

        reply.AssertError(HttpStatusCode.BadRequest, "unauthorized_client");
    }

    [Theory, Stores]
    public async Task A_scope_not_registered_for_the_profile_is_invalid_scope(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var profile = await host.CreateProfileAsync(scopes: ["videocentral::reporting"]);

        var reply = await host.PostTokenAsync(TollgateHost.WithClient(profile,
            ("grant_type", "client_credentials"), ("scope", "videocentral::reporting videocentral::admin")));

        reply.AssertError(HttpStatusCode.BadRequest, "invalid_scope");
        Assert.Contains("videocentral::admin", reply.Description, StringComparison.Ordinal);
    }

    [Theory, Stores]
    public async Task A_store_that_cannot_be_written_answers_temporarily_unavailable_and_recovers(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);
        var (profile, tokens) = await host.AuthorizeAsync(refreshPolicy: "rotate");

        // Another process holds the store's write lock longer than the server waits for it (3 s on either store).
        using (host.BlockStore())
        {
            var refused = await host.RefreshAsync(profile, tokens.RefreshToken);

            refused.AssertError(HttpStatusCode.ServiceUnavailable, "temporarily_unavailable");
            Assert.NotNull(refused.Headers.RetryAfter);
        }

        // The refused rotation consumed nothing, so the same token still works once the store is back.
        var recovered = await host.RefreshAsync(profile, tokens.RefreshToken);
        Assert.Equal(HttpStatusCode.OK, recovered.Status);
    }

    [Theory, Stores]
    public async Task Other_methods_and_paths_get_a_protocol_error_not_an_empty_body(StoreKind store)
    {
        await using var host = await TollgateHost.StartAsync(store);

        var get = await host.GetAsync("/auth/o2/token");
        get.AssertError(HttpStatusCode.MethodNotAllowed, "invalid_request");

        var missing = await host.GetAsync("/no/such/thing");
        missing.AssertError(HttpStatusCode.NotFound, "invalid_request");
    }
}
