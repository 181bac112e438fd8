using System.Runtime.InteropServices;

namespace Tollgate.Client;

/// <summary>The few POSIX calls .NET does not expose: fsync of a directory after a rename.</summary>
internal static partial class NativeMethods
{
    private const int EINVAL = 22;

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    /// <summary>
    /// Flushes a directory's entries (the rename that replaced the store file) to disk. Does nothing on Windows,
    /// where NTFS journals renames, nor on file systems that cannot fsync a directory (EINVAL).
    /// </summary>
    public static void FsyncDirectory(string directory)
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
