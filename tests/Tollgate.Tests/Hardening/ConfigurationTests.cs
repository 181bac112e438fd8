using Microsoft.Extensions.Configuration;
using Tollgate.Server;
using Tollgate.Tests.Infrastructure;

namespace Tollgate.Tests.Hardening;

/// <summary>A bad configuration stops the server at start with a message that names the key.</summary>
public sealed class ConfigurationTests : IDisposable
{
    private readonly string _directory = TempDirectory.Create();

    public void Dispose() => TempDirectory.Delete(_directory);

    private static TollgateOptions Load(params (string Key, string Value)[] values) => TollgateOptions.Load(
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build());

    [Theory]
    [InlineData("Tollgate:Limits:MaxRequestHeaderBytes", "10", "Tollgate:Limits:MaxRequestHeaderBytes")]
    [InlineData("Tollgate:Limits:RequestBodyGraceSeconds", "1", "Tollgate:Limits:RequestBodyGraceSeconds")]
    [InlineData("Tollgate:RateLimits:TokenRequestsPerIpPerMinute", "-1", "Tollgate:RateLimits:TokenRequestsPerIpPerMinute")]
    [InlineData("Tollgate:Keys:AccessTokenKeyRotationDays", "0", "Tollgate:Keys:AccessTokenKeyRotationDays")]
    [InlineData("Tollgate:Telemetry:LogFormat", "xml", "Tollgate:Telemetry:LogFormat")]
    [InlineData("Tollgate:Telemetry:OtlpEndpoint", "not a url", "Tollgate:Telemetry:OtlpEndpoint")]
    [InlineData("Tollgate:MasterKey", "c2hvcnQ=", "Tollgate:MasterKey")]
    [InlineData("Tollgate:MasterKeyFile", "/nonexistent/master.key", "Tollgate:MasterKeyFile")]
    [InlineData("Tollgate:MaxTokenRequestBytes", "2000000", "Tollgate:MaxTokenRequestBytes")]
    public void An_out_of_range_value_is_named(string key, string value, string named)
    {
        var problem = Load((key, value)).Validate();

        Assert.NotNull(problem);
        Assert.Contains(named, problem, StringComparison.Ordinal);
    }

    [Fact]
    public void The_defaults_are_valid()
    {
        Assert.Null(Load().Validate());
    }

    [Fact]
    public void An_unknown_key_or_a_value_of_the_wrong_type_is_named()
    {
        var typo = Assert.Throws<TollgateConfigurationException>(() => Load(("Tollgate:RateLimits:TokenRequestPerIpPerMinute", "5")));
        var type = Assert.Throws<TollgateConfigurationException>(() => Load(("Tollgate:AccessTokenLifetimeSeconds", "an hour")));

        Assert.Equal("Tollgate:RateLimits:TokenRequestPerIpPerMinute is not a setting (see docs/configuration.md for every key)", typo.Message);
        Assert.Contains("Tollgate:AccessTokenLifetimeSeconds", type.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Serve_refuses_to_start_on_a_bad_tollgate_json_naming_the_key()
    {
        await File.WriteAllTextAsync(Path.Combine(_directory, "tollgate.json"), """{"Tollgate":{"Limits":{"MaxRequestHeaderCount":1}}}""");

        var result = await TollgateCommand.RunAsync(_directory, ["serve", "--urls", "http://127.0.0.1:0", "--db", "sqlite:" + Path.Combine(_directory, "t.db")]);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("Tollgate:Limits:MaxRequestHeaderCount", result.Stderr, StringComparison.Ordinal);
        Assert.Single(result.Stderr.Trim().Split('\n'));
    }

    [Fact]
    public async Task Serve_refuses_to_start_on_a_bad_environment_override_naming_the_key()
    {
        var result = await TollgateCommand.RunAsync(_directory, ["serve", "--urls", "http://127.0.0.1:0", "--db", "sqlite:" + Path.Combine(_directory, "t.db")],
            env: new Dictionary<string, string> { ["Tollgate__MasterKey"] = "not base64" });

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("Tollgate:MasterKey", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Serve_refuses_a_tollgate_json_that_is_not_json()
    {
        await File.WriteAllTextAsync(Path.Combine(_directory, "tollgate.json"), "{ this is not json");

        var result = await TollgateCommand.RunAsync(_directory, ["serve", "--urls", "http://127.0.0.1:0", "--db", "sqlite:" + Path.Combine(_directory, "t.db")]);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("tollgate.json", result.Stderr, StringComparison.Ordinal);
    }
}
