using System.Runtime.InteropServices;

namespace Tollgate.Durability;

/// <summary>
/// Directory entries that survive a power cut. A name (a new file, a rename over an old one, a new directory) reaches
/// the disk only when the directory holding it is fsynced: fsync(2) says that syncing a file "does not necessarily
/// ensure that the entry in the directory containing the file has also reached disk". .NET offers no fsync of a
/// directory, hence these few POSIX calls. Compiled into the server (its SQLite file's directory) and the client
/// (its credentials file), so both keep one implementation.
/// </summary>
internal static partial class DurableDirectory
{
    private const int EINVAL = 22;

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    /// <summary>
    /// Creates <paramref name="directory"/> and any missing parent, each made durable by syncing the directory above it
    /// once it exists. Without that, a power cut soon after the first start (or the first login) takes the new
    /// directory away, and with it everything synced inside it. <paramref name="mode"/> applies to each new directory.
    /// </summary>
    public static void Create(string directory, UnixFileMode? mode = null)
    {
        if (Directory.Exists(directory))
            return;
        var parent = Path.GetDirectoryName(directory);
        if (parent is not null)
            Create(parent, mode);
        if (mode is { } unixMode && !OperatingSystem.IsWindows())
            Directory.CreateDirectory(directory, unixMode);
        else
            Directory.CreateDirectory(directory);
        if (parent is not null)
            Sync(parent);
    }

    /// <summary>
    /// Flushes a directory's entries (a file created, renamed into place or deleted in it) to disk. Does nothing on
    /// Windows, where NTFS journals them, nor on file systems that cannot fsync a directory (EINVAL).
    /// </summary>
    public static void Sync(string directory)
    {
        if (OperatingSystem.IsWindows())
            return;
        int fd;
        try
        {
            fd = Open(directory, 0 /* O_RDONLY */);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return;
        }
        if (fd < 0)
            throw new IOException($"Cannot open directory {directory} to fsync it (errno {Marshal.GetLastPInvokeError()}).");
        try
        {
            if (Fsync(fd) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno != EINVAL)
                    throw new IOException($"fsync of directory {directory} failed (errno {errno}).");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }
}
