"""The signatures of a store's files, listed and stat'ed, or kept current by the kernel.

A frame or search call must notice every change to every file of every session, in-place
rewrites included (a3s-code 3.x rewrites its fragments in place, which leaves the time of
their directory alone). So each call lists the part directories and stats every file: at
5,000 sessions, 25,000 stats, most of a warm call. ``scan_dirs`` does that.

A process that asks again (a kernel calling the frames or a search once more) can let the
kernel say what changed instead: ``LiveScan`` holds an inotify watch on the directories
``scan_dirs`` lists, does one full scan, and from then on stats only the entries the kernel
reported touched. Its answer is the full scan's, or it gives up and says so (the caller
then scans in full and watches anew). It is used only where the kernel sees every write:

- Linux, and directories on a local file system (by the mount table: on NFS, SMB, FUSE or
  a virtual machine's shared folder another machine's writes send no event);
- an overflowed event queue, a watched directory removed, moved or replaced, or the store's
  path naming another directory now: the watch is dropped;
- an entry that is a symbolic link, a directory or has other hard links can change through
  a path the watch does not see: such entries are stat'ed on every call.

Two changes send no event to a directory's watch: writes through a shared memory map,
and writes through a second name given to a file outside the store after the watch began
(the kernel tells the file's own watchers of the new link, not its directory's). No tool
writes session files either way (watchman and git's fsmonitor have the same blind spots).
``A3S_NB_WATCH=0`` in the environment turns the watch off.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat as stat_
import struct
import sys
import threading
from collections.abc import Callable
from typing import NamedTuple


def signature(st: os.stat_result) -> list[int]:
    """What a cache records of a file it read: ``[mtime_ns, size, inode, ctime_ns]``.

    The modification time can be set back (``os.utime``: rsync, some editors), so an edit
    in place that keeps the size would go unseen by ``(mtime, size)`` alone; the inode
    and the change time cannot be set back. (What is "changed too recently to trust"
    goes by the modification time alone: a store copied with its times kept is trusted
    at once.)"""
    return [st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns]


#: The signature of an entry that is listed but cannot be stat'ed (vanished while we
#: looked, or a dangling link): load() decides what that means.
UNREADABLE = [-1, -1, -1, -1]


class Slot(NamedTuple):
    """One listed directory: its entries ``<head><stem><tail>`` are a part's files, or,
    with a ``leaf``, directories holding the part's file ``leaf`` (one per stem)."""

    directory: str
    head: str
    tail: str
    leaf: str = ""

    def stem(self, name: str) -> str | None:
        """The stem of the entry ``name``, or None if it is not one of this slot's."""
        if len(name) <= len(self.head) + len(self.tail):
            return None
        if not name.endswith(self.tail) or not name.startswith(self.head):
            return None
        return name[len(self.head) : len(name) - len(self.tail)]


_DIR_FD = os.stat in os.supports_dir_fd and os.listdir in os.supports_fd


def scan_dirs(slot: Slot) -> dict[str, list[int]]:
    """``stem -> signature`` of the slot's entries (of the file ``leaf`` in them, when it
    has one). Links are followed.

    One listing and one ``stat`` per entry, relative to the open directory where the
    system allows it: at thousands of sessions these stats are most of a warm call.
    """
    directory, head, tail, leaf = slot
    fixed = len(head) + len(tail)
    out: dict[str, list[int]] = {}
    fd = None
    try:
        if _DIR_FD:
            fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            names = os.listdir(fd)
        else:  # pragma: no cover - Windows
            names = os.listdir(directory)
    except OSError:
        if fd is not None:
            os.close(fd)
        return out
    stat = os.stat
    try:
        for name in names:
            if len(name) <= fixed or not name.endswith(tail) or not name.startswith(head):
                continue
            stem = name[len(head) : len(name) - len(tail)]
            path = f"{name}/{leaf}" if leaf else name
            try:
                if fd is not None:
                    st = stat(path, dir_fd=fd)
                else:  # pragma: no cover - Windows
                    st = stat(os.path.join(directory, path))
            except OSError:
                if not leaf:  # vanished, or a dangling link: load() says what that means
                    out[stem] = UNREADABLE
                continue  # a session without artifacts
            out[stem] = [st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns]
    finally:
        if fd is not None:
            os.close(fd)
    return out


# ---- the kernel's watch ------------------------------------------------------------------

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF = 0x400, 0x800
_IN_UNMOUNT, _IN_Q_OVERFLOW, _IN_IGNORED = 0x2000, 0x4000, 0x8000
_IN_ONLYDIR = 0x01000000
#: Every event that can change an entry's signature, its existence or what it names.
_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
)
#: The watched directory itself went away, or the kernel lost events.
_LOST = _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_UNMOUNT | _IN_Q_OVERFLOW | _IN_IGNORED
_EVENT = struct.Struct("iIII")

#: File systems whose every change goes through this kernel (so sends an event).
LOCAL_FILE_SYSTEMS = frozenset(
    [
        "ext2",
        "ext3",
        "ext4",
        "xfs",
        "btrfs",
        "tmpfs",
        "ramfs",
        "overlay",
        "zfs",
        "f2fs",
        "jfs",
        "reiserfs",
        "bcachefs",
        "nilfs2",
    ]
)


class Unwatchable(OSError):
    """The kernel cannot watch these directories for every change."""


_libc: ctypes.CDLL | None = None


def _inotify() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        if not sys.platform.startswith("linux"):
            raise Unwatchable(errno.ENOSYS, "inotify is Linux's")
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.inotify_init1.argtypes = [ctypes.c_int]
            _libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        except (OSError, AttributeError) as e:
            raise Unwatchable(errno.ENOSYS, f"no inotify: {e}") from None
    return _libc


def file_system_types() -> dict[int, str]:
    """``st_dev -> file system type`` of every mount, from ``/proc/self/mountinfo``."""
    out: dict[int, str] = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        try:
            major, minor = fields[2].split(":")
            fstype = fields[fields.index("-") + 1]
        except (ValueError, IndexError):
            continue
        out[os.makedev(int(major), int(minor))] = fstype
    return out


def enabled() -> bool:
    """Whether the environment lets the scans use a watch (``A3S_NB_WATCH=0`` does not)."""
    return os.environ.get("A3S_NB_WATCH", "1").strip().lower() not in {"0", "no", "false", "off"}


class LiveScan:
    """``scan_dirs`` of a set of slots under ``root``, kept current by an inotify watch.

    ``scan()`` gives every slot's ``stem -> signature``, exactly as ``scan_dirs`` would
    now, or raises ``Unwatchable`` when the watch lost track (the owner then drops it).
    Not for use across ``fork``: a child must not read its parent's events.
    """

    def __init__(self, root: str, slots: tuple[Slot, ...]):
        self.root, self.slots, self.pid = root, slots, os.getpid()
        libc = _inotify()
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise Unwatchable(e, f"inotify_init1: {os.strerror(e)}")
        self._fd: int | None = fd
        self._lock = threading.Lock()
        self._dirs: dict[int, str] = {}  # watch -> directory
        try:
            self._start(libc)
        except BaseException:
            self.close()
            raise

    def _start(self, libc: ctypes.CDLL) -> None:
        self._add = libc.inotify_add_watch
        root_st = os.stat(self.root)
        self._root_id = (root_st.st_dev, root_st.st_ino)
        types = file_system_types()
        #: directory -> the names in it whose change changes what the slots list (a slot's
        #: directory, or one on the way to it): any event on one drops the watch
        self._parents: dict[str, set[str]] = {}
        self._by_dir: dict[str, list[int]] = {}  # a slot's directory -> its slots
        self._leaf_dirs: dict[int, tuple[int, str]] = {}  # watch of a leaf's dir -> (slot, stem)
        self._devs: list[int] = []  # each slot's directory's device (-1: not there)
        for i, slot in enumerate(self.slots):
            self._by_dir.setdefault(slot.directory, []).append(i)
            d = slot.directory
            while d != self.root and os.path.dirname(d) != d:
                parent = os.path.dirname(d)
                self._parents.setdefault(parent, set()).add(os.path.basename(d))
                d = parent
        devs: dict[str, int] = {}
        for directory in sorted({self.root, *self._parents, *self._by_dir}, key=len):
            if not os.path.isdir(directory):
                continue  # its making is an event in its parent
            devs[directory] = dev = os.stat(directory).st_dev
            fstype = types.get(dev)
            if fstype not in LOCAL_FILE_SYSTEMS:
                raise Unwatchable(errno.EXDEV, f"{directory} is on {fstype or 'an unknown'} fs")
            wd = self._watch(directory)
            if wd >= 0:
                self._dirs[wd] = directory
        # watched first, listed second: a change made while listing is an event next time
        self.raw: list[dict[str, list[int]]] = []
        self._volatile: list[set[str]] = []
        for i, slot in enumerate(self.slots):
            self._devs.append(devs.get(slot.directory, -1))
            found: dict[str, list[int]] = {}
            volatile: set[str] = set()
            try:
                names = os.listdir(slot.directory)
            except OSError:
                names = []
            for name in names:
                stem = slot.stem(name)
                if stem is not None:
                    self._restat(i, stem, found, volatile)
            self.raw.append(found)
            self._volatile.append(volatile)

    def _watch(self, directory: str) -> int:
        """The watch on ``directory`` (-1 if it is gone or not a directory now)."""
        wd = self._add(self._fd, os.fsencode(directory), _MASK)
        if wd < 0:
            e = ctypes.get_errno()
            if e in (errno.ENOENT, errno.ENOTDIR):
                return -1  # its listing says so
            raise Unwatchable(e, f"inotify_add_watch {directory}: {os.strerror(e)}")
        return wd

    def _restat(self, i: int, stem: str, found: dict[str, list[int]], volatile: set[str]) -> None:
        """Put the signature of slot ``i``'s entry ``stem`` into ``found``, as ``scan_dirs``
        would; note it in ``volatile`` if it can change unseen by the watch (a link, a
        directory, a file with other names, or another file system mounted there)."""
        slot, dev = self.slots[i], self._devs[i]
        entry = f"{slot.directory}/{slot.head}{stem}{slot.tail}"
        path = f"{entry}/{slot.leaf}" if slot.leaf else entry
        unseen = False
        if slot.leaf:
            try:
                entry_st = os.lstat(entry)
            except OSError:
                found.pop(stem, None)
                volatile.discard(stem)
                return
            if stat_.S_ISDIR(entry_st.st_mode) and entry_st.st_dev == dev:
                wd = self._watch(entry)
                if wd in self._dirs or self._leaf_dirs.get(wd, (i, stem)) != (i, stem):
                    unseen = True  # not a directory of its own (a bind mount)  # pragma: no cover
                elif wd >= 0:
                    self._leaf_dirs[wd] = (i, stem)
            else:
                unseen = True
        try:
            st = os.lstat(path)
            if stat_.S_ISLNK(st.st_mode):
                unseen = True
                st = os.stat(path)
        except OSError:
            if slot.leaf or not os.path.lexists(path):
                found.pop(stem, None)
            else:
                found[stem] = UNREADABLE
            (volatile.add if unseen else volatile.discard)(stem)
            return
        found[stem] = signature(st)
        if unseen or st.st_nlink > 1 or st.st_dev != dev or stat_.S_ISDIR(st.st_mode):
            volatile.add(stem)
        else:
            volatile.discard(stem)

    def scan(self) -> list[dict[str, list[int]]]:
        """Every slot's ``stem -> signature`` as of now (fresh dicts, the caller's)."""
        with self._lock:
            if self._fd is None or self.pid != os.getpid():
                raise Unwatchable(errno.EBADF, "the watch is closed or its parent's")
            try:
                st = os.stat(self.root)
            except OSError as e:
                raise Unwatchable(e.errno, f"{self.root}: {e.strerror}") from None
            if (st.st_dev, st.st_ino) != self._root_id:
                raise Unwatchable(errno.ESTALE, f"{self.root} names another directory now")
            touched = self._events()
            for i, stem in touched:
                self._restat(i, stem, self.raw[i], self._volatile[i])
            for i, volatile in enumerate(self._volatile):
                for stem in list(volatile):
                    self._restat(i, stem, self.raw[i], volatile)
            return [dict(found) for found in self.raw]

    def _events(self) -> set[tuple[int, str]]:
        """``(slot, stem)`` of every entry the kernel reported touched since last asked."""
        touched: set[tuple[int, str]] = set()
        assert self._fd is not None
        while True:
            try:
                buf = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return touched
            except OSError as e:
                raise Unwatchable(e.errno, f"reading the watch: {e.strerror}") from None
            at = 0
            while at < len(buf):
                wd, mask, _cookie, size = _EVENT.unpack_from(buf, at)
                name = buf[at + 16 : at + 16 + size].split(b"\0", 1)[0]
                at += 16 + size
                self._event(wd, mask, os.fsdecode(name), touched)

    def _event(self, wd: int, mask: int, name: str, touched: set[tuple[int, str]]) -> None:
        if mask & _IN_Q_OVERFLOW:
            raise Unwatchable(errno.EOVERFLOW, "the kernel dropped events")
        owner = self._leaf_dirs.get(wd)
        if owner is not None:  # a directory holding one stem's leaf
            if mask & _LOST or name == self.slots[owner[0]].leaf:
                touched.add(owner)
            if mask & _IN_IGNORED:
                del self._leaf_dirs[wd]
            return
        directory = self._dirs.get(wd)
        if directory is None:  # pragma: no cover - the kernel names only watches it made
            return
        if mask & _LOST:  # the root, a slot's directory or one on the way to it
            raise Unwatchable(errno.ESTALE, f"{directory} was removed or moved")
        if name in self._parents.get(directory, ()):
            raise Unwatchable(errno.ESTALE, f"{directory}/{name} was made, moved or removed")
        for i in self._by_dir.get(directory, ()):
            stem = self.slots[i].stem(name)
            if stem is not None:
                touched.add((i, stem))

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and self.pid == os.getpid():
            os.close(fd)


class Watches:
    """The live scans of a process, one per root, the last ``keep`` roots asked twice.

    A root's first scan is a full one (a process that asks once pays nothing for a
    watch); its second sets a watch up; later ones read its events. A root that cannot
    be watched is scanned in full every time.
    """

    def __init__(self, keep: int = 4):
        self.keep = keep
        self._live: dict[str, LiveScan] = {}
        self._seen: dict[str, bool] = {}  # root -> watchable (as far as known)
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """In a forked child: start afresh, never reading the parent's watches (their events
        would be lost to it) nor waiting on a lock a parent's thread held at the fork."""
        self._live, self._seen, self._lock = {}, {}, threading.Lock()

    def scan(
        self, root: str, slots: tuple[Slot, ...], full: Callable[[Slot], dict[str, list[int]]]
    ) -> list[dict[str, list[int]]]:
        """Every slot's ``stem -> signature``: from ``root``'s watch, or by ``full``."""
        live = self._get(root, slots)
        if live is not None:
            try:
                return live.scan()
            except Unwatchable:
                self._drop(root, live)
        return [full(slot) for slot in slots]

    def _get(self, root: str, slots: tuple[Slot, ...]) -> LiveScan | None:
        with self._lock:
            if not enabled():
                return None
            live = self._live.get(root)
            if live is not None and live.slots == slots and live.pid == os.getpid():
                return live
            if live is not None:
                self._drop(root, live)
            known = self._seen.get(root)
            if known is None:  # the first ask: a full scan
                if len(self._seen) >= 256:
                    self._seen.clear()
                self._seen[root] = True
            if not known:
                return None
            try:
                live = LiveScan(root, slots)
            except (Unwatchable, OSError):
                self._seen[root] = False
                return None
            self._live[root] = live
            while len(self._live) > self.keep:
                oldest = next(iter(self._live))
                self._drop(oldest, self._live[oldest])
            return live

    def _drop(self, root: str, live: LiveScan) -> None:
        live.close()
        if self._live.get(root) is live:
            del self._live[root]
