"""Proxy directories: the host directory each container gets at ``/ft`` (the proxy's socket
and its log files), shared by every container backend.

The directory is writable from inside the container: on the host's disk an action could fill
that disk for every tenant, so it is a small tmpfs of its own (whose pages count against the
container's memory, as they are written by the container).

A directory whose container has gone is emptied and kept for the next one rather than
unmounted: a mount and an unmount (propagated to every mount namespace that shares the root,
a zygote's) cost more than deleting the few files a proxy leaves."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import shutil
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(None, use_errno=True)
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MS_BIND, _MS_REC, _MS_SHARED = 0x1000, 0x4000, 1 << 20
_MNT_DETACH = 0x2
# A proxy directory holds a socket, the log directory and one activation's log file at a time.
_IO_DIR_INODES = 1024
_RELEASE_PASSES = 5
KEPT_FOR_REUSE = 64  # emptied directories kept mounted, at most


def _checked(result: int, path: Path) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))


def _mount_tmpfs(path: Path, size_mb: int, uid: int, gid: int) -> None:
    options = f"size={size_mb}m,nr_inodes={_IO_DIR_INODES},mode=0700,uid={uid},gid={gid}"
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _checked(_libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", flags, options.encode()), path)


def _unmount(path: Path) -> None:
    # Lazily: the engine may still hold the bind of a container it is tearing down.
    _checked(_libc.umount2(os.fsencode(path), _MNT_DETACH), path)


def _share(path: Path) -> None:
    """Make ``path`` a shared mount (bound over itself first if it is none), so mounts made
    under it later reach the copies of it in other mount namespaces."""
    if not _is_mount_point(path):
        _checked(_libc.mount(os.fsencode(path), os.fsencode(path), None, _MS_BIND | _MS_REC,
                             None), path)
    _checked(_libc.mount(None, os.fsencode(path), None, _MS_SHARED, None), path)


def _mount_points() -> list[bytes]:
    with open("/proc/self/mounts", "rb") as mounts:
        # Spaces and other specials in mount points are octal escapes (\040).
        return [re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), line.split()[1])
                for line in mounts]


def mount_points_under(root: Path) -> list[Path]:
    """Every mount at or below ``root``, once per mount (a path mounted twice is listed
    twice), deepest first so that nested mounts come off before their parents."""
    exact, prefix = os.fsencode(root), os.fsencode(root) + b"/"
    points = [Path(os.fsdecode(p)) for p in _mount_points() if p == exact or p.startswith(prefix)]
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def _is_mount_point(path: Path) -> bool:
    """From the mount table: os.path.ismount misses a bind mount of a directory of the same
    file system (same device, and not its root)."""
    return os.fsencode(path) in _mount_points()


class IoDirs:
    """The proxy directories of one invoker, under ``root``, owned by the container user.

    ``shared``: the root is made a shared mount before the first directory is mounted under
    it, so that a copy of the root in another mount namespace (a zygote's) sees each new one
    (and each is mounted once)."""

    def __init__(self, root: Path, uid: int, gid: int, quota_mb: int,
                 shared: bool = False) -> None:
        self.root = root
        self._uid, self._gid = uid, gid
        self._quota_mb = quota_mb
        self._share_root = shared
        self._root_shared = False
        self._reusable: deque[Path] = deque()  # emptied, theirs again; taken from any thread

    def share(self) -> None:
        """Make the root a shared mount, unless it already is (the caller asked for it)."""
        if self._share_root and not self._root_shared:
            _share(self.root)
            self._root_shared = True

    def prepare(self, pool_id: str) -> Path:
        """A proxy directory for a new container: an emptied one, or a new one named after
        it (so the name of a reused one is not its container's)."""
        with contextlib.suppress(IndexError):
            return self._reusable.pop()
        self.share()
        io_dir = self.root / pool_id
        release_io_dir(io_dir)
        io_dir.mkdir(parents=True)
        self._limit(io_dir)
        self._make_logs(io_dir)
        return io_dir

    def _make_logs(self, io_dir: Path) -> None:
        (io_dir / "logs").mkdir()
        for path in (io_dir, io_dir / "logs"):
            os.chown(path, self._uid, self._gid)

    def release(self, io_dir: Path) -> None:
        """The directory of a container that has gone (none of its processes is left): kept
        for the next container once nothing of this one is left in it, else removed."""
        if len(self._reusable) < KEPT_FOR_REUSE and io_dir.parent == self.root:
            try:
                self._empty(io_dir)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    log.warning("could not empty %s for reuse (%s): removing it", io_dir, exc)
            else:
                self._reusable.append(io_dir)
                return
        release_io_dir(io_dir)

    def _empty(self, io_dir: Path) -> None:
        """Everything the last container left, gone: its files, and the extended attributes
        (ACLs included), owner and mode of the directory itself."""
        with os.scandir(io_dir) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
        for name in os.listxattr(io_dir, follow_symlinks=False):
            os.removexattr(io_dir, name, follow_symlinks=False)
        os.chmod(io_dir, 0o700, follow_symlinks=False)
        self._make_logs(io_dir)

    def _limit(self, io_dir: Path) -> None:
        if not self._quota_mb:
            return
        try:
            _mount_tmpfs(io_dir, self._quota_mb, self._uid, self._gid)
        except OSError as exc:
            log.warning("proxy directories are not size-limited (cannot mount a tmpfs: %s); "
                        "actions can fill the disk of %s", exc, self.root)
            self._quota_mb = 0

    def release_all(self) -> None:
        """Unmount and delete every proxy directory under the root, and the root's own
        mounts. Until none is left: a directory mounted before the root was bound over
        itself (by an invoker before this one) comes into sight only once the bind is gone."""
        for _ in range(_RELEASE_PASSES):
            points = mount_points_under(self.root)
            if not points:
                break
            for point in points:
                with contextlib.suppress(OSError):  # the same path's other mount went first
                    _unmount(point)
        else:
            log.warning("mounts are left under %s", self.root)
        self._root_shared = False
        self._reusable.clear()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)


def release_io_dir(path: Path) -> None:
    """Unmount the tmpfs of one proxy directory (nothing is mounted below one), then delete
    it. Made for every container that goes, so it asks the kernel, not the mount table."""
    try:
        _unmount(path)
    except OSError as exc:
        # Not a mount point, no directory, or no right to mount (so nothing was mounted).
        if exc.errno not in (errno.EINVAL, errno.ENOENT, errno.EPERM):
            log.warning("could not unmount %s: %s", path, exc)
    try:
        os.rmdir(path)  # empty once its tmpfs is gone
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
