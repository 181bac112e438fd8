namespace Tollgate.Server.Admin;

/// <summary>An admin operation's outcome: a value, or a one-line reason it was refused (bad input, a conflict).</summary>
internal readonly record struct AdminResult<T>(T? Value, string? Problem)
{
    public static implicit operator AdminResult<T>(T value) => new(value, null);

    public static AdminResult<T> Refused(string problem) => new(default, problem);

    /// <summary>For values an implicit conversion cannot reach (interfaces).</summary>
    public static AdminResult<T> From(T value) => new(value, null);
}
