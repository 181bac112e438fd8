namespace Tollgate.Client;

/// <summary>
/// The token store cannot be used as it is: its file is corrupt, belongs to something else, was written with another
/// key, or cannot be read or written. The file is never overwritten or removed because of this error.
/// </summary>
public sealed class TokenStoreException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong and what to do.</param>
    public TokenStoreException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with its cause.</summary>
    /// <param name="message">What is wrong and what to do.</param>
    /// <param name="innerException">The cause.</param>
    public TokenStoreException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
