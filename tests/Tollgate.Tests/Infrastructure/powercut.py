#!/usr/bin/python3
"""powercut: a FUSE file system that behaves like a disk with a volatile write cache, for power-loss tests.

    /usr/bin/python3 powercut.py BACKING_DIR MOUNT_POINT

Everything written under MOUNT_POINT stays in this process's memory, the way a disk's cache (or the kernel's page
cache) holds it, until the program that wrote it calls fsync or fdatasync on the file; only then is it written to the
same file under BACKING_DIR, and that file fsynced. Creating, renaming and deleting files and directories is seen at
once, but is durable only once every directory it changed has been fsynced, as POSIX has it (fsync(2): syncing a file
does not sync the directory entry that names it). A line "cut" on stdin cuts the power: every write not yet synced
is thrown away, every change of a directory not yet synced is undone, and every later operation fails with EIO, as
on a machine whose disk stopped. Unmount afterwards (`umount MOUNT_POINT`) and BACKING_DIR holds exactly what had
reached the disk before the cut. Unmounted without a cut, it writes everything back first, as a clean shutdown would.

Why not the kernel's own tools: dm-flakey and dm-log-writes need device-mapper, which this machine's kernel lacks;
/dev/fuse is there. Stricter than most real disks (nothing unsynced ever reaches the disk early, so a program that
answers before its fsync loses that write every time, and a journaling file system often makes a new name durable
along with the file's own fsync, which this does not); more lenient in one way: a file's size, mode and times are
durable at once. A rename from one directory to another is refused with EXDEV, as between two file systems
(see rename).

Talks on stdout: "mounted" once the file system is up, "cut: N pages of M files thrown away, K directory changes
undone" after a cut. Files deleted or replaced while their directory is unsynced wait in BACKING_DIR/.powercut-stash,
which the mount does not show, and which is gone once the disk is unmounted.
Needs Debian's python3-fusepy (and /dev/fuse); runs as root, which lets libfuse mount without fusermount. Other users
may enter it, and what they create is theirs, so that PostgreSQL can run on it as its own user.
"""
import errno
import os
import shutil
import sys
import threading

try:
    from fusepy import FUSE, FuseOSError, Operations, fuse_get_context  # Debian's python3-fusepy
except ImportError:
    from fuse import FUSE, FuseOSError, Operations, fuse_get_context  # fusepy as pip installs it

PAGE = 4096
STASH = '.powercut-stash'
TRACE = os.environ.get('POWERCUT_TRACE') == '1'  # every failed operation (but a missing file) on stderr


class Cache:
    """One file's unsynced contents: whole pages, the file's size as programs see it, and how far a truncation that
    has not reached the disk yet cut the file (bytes past it on the disk are no longer the file's)."""

    def __init__(self, fd, disk_size):
        self.fd = fd  # our own read-write descriptor, so the cache can be written back even after the file is deleted
        self.size = disk_size
        self.cut_at = disk_size
        self.pages = {}

    def _disk_page(self, index):
        start = index * PAGE
        if start >= self.cut_at:
            return bytearray(PAGE)
        data = bytearray(os.pread(self.fd, PAGE, start))
        keep = min(len(data), self.cut_at - start)
        return data[:keep] + bytearray(PAGE - keep)

    def _page(self, index):
        page = self.pages.get(index)
        if page is None:
            page = self.pages[index] = self._disk_page(index)
        return page

    def write(self, data, offset):
        at = 0
        while at < len(data):
            index, within = divmod(offset + at, PAGE)
            n = min(PAGE - within, len(data) - at)
            self._page(index)[within:within + n] = data[at:at + n]
            at += n
        self.size = max(self.size, offset + len(data))

    def truncate(self, size):
        for index in [i for i in self.pages if i * PAGE >= size]:
            del self.pages[index]
        index, within = divmod(size, PAGE)
        if within and index in self.pages:
            self.pages[index][within:] = bytearray(PAGE - within)
        self.cut_at = min(self.cut_at, size)
        self.size = size

    def read(self, size, offset):
        end = min(offset + size, self.size)
        out = bytearray()
        position = offset
        while position < end:
            index, within = divmod(position, PAGE)
            page = self.pages.get(index) or self._disk_page(index)
            n = min(PAGE - within, end - position)
            out += page[within:within + n]
            position += n
        return bytes(out)

    def write_back(self):
        if self.cut_at < os.fstat(self.fd).st_size:
            os.ftruncate(self.fd, self.cut_at)
        for index, page in sorted(self.pages.items()):
            start = index * PAGE
            if start < self.size:
                os.pwrite(self.fd, bytes(page[:self.size - start]), start)
        os.ftruncate(self.fd, self.size)
        os.fsync(self.fd)


class Change:
    """A change to the namespace (a name created, renamed or removed) that is durable only once every directory it
    changed has been fsynced; until then a cut undoes it."""

    def __init__(self, directories, undo, forget):
        self.directories = set(directories)  # backing paths of the directories still to be synced
        self.undo = undo  # puts the names back as they were before the change
        self.forget = forget  # once durable: drops what undo needed (a stashed file), or None


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


class PowerCut(Operations):
    def __init__(self, backing):
        self.backing = os.path.realpath(backing)
        self.mutex = threading.Lock()
        self.caches = {}  # inode on the backing file system -> Cache
        self.changes = []  # Change, oldest first, not yet durable
        self.stash = os.path.join(self.backing, STASH)
        self.stashed = 0
        self.cut = False
        os.makedirs(self.stash, exist_ok=True)

    # fusepy registers every operation the class has; None leaves one out. Without `lock` the kernel keeps POSIX locks
    # itself, as SQLite needs; without the xattr calls the kernel stops asking for them (it would on every write).
    lock = None
    getxattr = None
    listxattr = None

    def _path(self, path):
        return os.path.normpath(os.path.join(self.backing, path.lstrip('/')))

    def _changed(self, directories, undo, forget=None):
        self.changes.append(Change(directories, undo, forget))

    def _put_aside(self, path):
        """Moves a name that a change removes or replaces into the stash, so that a cut can bring it back."""
        self.stashed += 1
        aside = os.path.join(self.stash, str(self.stashed))
        os.rename(path, aside)
        return aside

    def __call__(self, op, *args):
        with self.mutex:
            if self.cut and op not in ('destroy', 'release', 'releasedir'):
                raise FuseOSError(errno.EIO)
            try:
                return super().__call__(op, *args)
            except OSError as e:
                if TRACE and e.errno != errno.ENOENT:
                    print('%s%r: %s' % (op, args[:2], e), file=sys.stderr, flush=True)
                raise FuseOSError(e.errno or errno.EIO)

    def cut_power(self):
        with self.mutex:
            self.cut = True
            pages = sum(len(c.pages) for c in self.caches.values())
            files = len(self.caches)
            for cache in self.caches.values():
                os.close(cache.fd)
            self.caches.clear()
            undone = len(self.changes)
            for change in reversed(self.changes):
                try:
                    change.undo()
                except OSError as e:
                    print('could not undo a directory change: %s' % e, file=sys.stderr, flush=True)
            self.changes.clear()
            shutil.rmtree(self.stash, ignore_errors=True)
        return pages, files, undone

    def _cache(self, fh, create):
        st = os.fstat(fh)
        cache = self.caches.get(st.st_ino)
        if cache is None and create:
            fd = os.open('/proc/self/fd/%d' % fh, os.O_RDWR)
            cache = self.caches[st.st_ino] = Cache(fd, st.st_size)
        return cache

    def init(self, path):
        print('mounted', flush=True)

    def destroy(self, path):
        if not self.cut:
            for cache in self.caches.values():
                cache.write_back()
                os.close(cache.fd)
            self.caches.clear()
            self.changes.clear()  # a clean shutdown syncs every directory
            shutil.rmtree(self.stash, ignore_errors=True)

    def getattr(self, path, fh=None):
        st = os.fstat(fh) if fh is not None else os.lstat(self._path(path))
        attrs = {key: getattr(st, key) for key in (
            'st_mode', 'st_nlink', 'st_uid', 'st_gid', 'st_size', 'st_atime', 'st_mtime', 'st_ctime', 'st_ino')}
        cache = self.caches.get(st.st_ino)
        if cache is not None:
            attrs['st_size'] = cache.size
        attrs['st_blocks'] = (attrs['st_size'] + 511) // 512
        return attrs

    def access(self, path, amode):
        if not os.access(self._path(path), amode):
            raise FuseOSError(errno.EACCES)

    def readdir(self, path, fh):
        names = os.listdir(self._path(path))
        return ['.', '..'] + [n for n in names if path != '/' or n != STASH]

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        return {key: getattr(st, key) for key in (
            'f_bavail', 'f_bfree', 'f_blocks', 'f_bsize', 'f_favail', 'f_ffree', 'f_files', 'f_flag', 'f_frsize',
            'f_namemax')}

    def _give_to_caller(self, path):
        # The daemon creates as root; the file belongs to whoever asked, as on a real disk. PostgreSQL, which runs as
        # its own user, must still own its files when it restarts straight on BACKING_DIR after a cut.
        uid, gid, _ = fuse_get_context()
        if os.geteuid() == 0 and (uid, gid) != (0, 0):
            os.lchown(path, uid, gid)

    def mkdir(self, path, mode):
        made = self._path(path)
        os.mkdir(made, mode)
        self._give_to_caller(made)
        self._changed([os.path.dirname(made)], undo=lambda: shutil.rmtree(made))

    def rmdir(self, path):
        removed = self._path(path)
        if os.listdir(removed):
            raise FuseOSError(errno.ENOTEMPTY)
        aside = self._put_aside(removed)
        self._changed([os.path.dirname(removed)], undo=lambda: os.rename(aside, removed), forget=lambda: os.rmdir(aside))

    def chmod(self, path, mode):
        os.chmod(self._path(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._path(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._path(path), times)

    def rename(self, old, new):
        source, target = self._path(old), self._path(new)
        if source == target:
            return  # rename(2) of a name onto itself changes nothing
        if os.path.dirname(source) != os.path.dirname(target):
            # Across directories a real cut can leave the name in both directories or in neither (its old one synced,
            # its new one not), and undoing one change cannot show that. Refused as a move between two file systems is
            # (EXDEV), a program links and unlinks instead, or copies and deletes (.NET's File.Move does), and each of
            # those changes one directory, which this disk models exactly.
            raise FuseOSError(errno.EXDEV)
        if os.path.isdir(target) and not os.path.islink(target) and os.listdir(target):
            raise FuseOSError(errno.ENOTEMPTY)
        replaced = self._put_aside(target) if os.path.lexists(target) else None
        os.rename(source, target)

        def undo():
            os.rename(target, source)
            if replaced is not None:
                os.rename(replaced, target)
        self._changed([os.path.dirname(target)], undo,
                      forget=(lambda: _remove(replaced)) if replaced is not None else None)

    def link(self, target, source):
        # fusepy's order: the new name first. Like creating a file, the new name lasts once its directory is synced.
        made = self._path(target)
        os.link(self._path(source), made)
        self._changed([os.path.dirname(made)], undo=lambda: os.unlink(made))

    def unlink(self, path):
        # A cache for it stays until its last writer syncs or the power goes; the name waits aside until the directory is synced.
        removed = self._path(path)
        aside = self._put_aside(removed)
        self._changed([os.path.dirname(removed)], undo=lambda: os.rename(aside, removed), forget=lambda: os.unlink(aside))

    def open(self, path, flags):
        # The cache owns the contents, so the backing file is never opened to truncate or append on its own.
        return os.open(self._path(path), flags & ~(os.O_TRUNC | os.O_APPEND | os.O_CREAT | os.O_EXCL))

    def create(self, path, mode, fi=None):
        created = self._path(path)
        fd = os.open(created, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
        self._give_to_caller(created)
        self._changed([os.path.dirname(created)], undo=lambda: os.unlink(created))
        return fd

    def read(self, path, size, offset, fh):
        cache = self._cache(fh, create=False)
        return cache.read(size, offset) if cache is not None else os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        self._cache(fh, create=True).write(data, offset)
        return len(data)

    def truncate(self, path, length, fh=None):
        if fh is None:
            fd = os.open(self._path(path), os.O_RDONLY)
            try:
                self._cache(fd, create=True).truncate(length)
            finally:
                os.close(fd)
        else:
            self._cache(fh, create=True).truncate(length)

    def fsync(self, path, datasync, fh):
        cache = self._cache(fh, create=False)
        if cache is not None:
            cache.write_back()
            os.close(cache.fd)
            del self.caches[os.fstat(fh).st_ino]
        else:
            os.fsync(fh)

    def flush(self, path, fh):
        pass  # close(2) does not make anything durable

    def release(self, path, fh):
        os.close(fh)

    def fsyncdir(self, path, datasync, fh):
        synced = self._path(path)
        pending = []
        for change in self.changes:
            change.directories.discard(synced)
            if change.directories:
                pending.append(change)
            elif change.forget is not None:
                change.forget()
        self.changes = pending


def main():
    backing, mount_point = sys.argv[1], sys.argv[2]
    fs = PowerCut(backing)

    def listen():
        for line in sys.stdin:
            if line.strip() == 'cut':
                pages, files, undone = fs.cut_power()
                print('cut: %d pages of %d files thrown away, %d directory changes undone' % (pages, files, undone), flush=True)

    threading.Thread(target=listen, daemon=True).start()
    # attr_timeout/entry_timeout 0: sizes come from the cache on every stat, never from the kernel's memory of them.
    # allow_other: PostgreSQL runs as its own user, and FUSE lets only the mounting user in without it (root may ask).
    FUSE(fs, mount_point, foreground=True, nothreads=False, big_writes=True, hard_remove=True, attr_timeout=0, entry_timeout=0, negative_timeout=0,
         allow_other=True)


if __name__ == '__main__':
    main()
