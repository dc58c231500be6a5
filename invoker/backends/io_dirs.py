"""Proxy directories: the host directory each container gets at ``/ft`` (the proxy's socket
and its log files), shared by every container backend.

The directory is writable from inside the container: on the host's disk an action could fill
that disk for every tenant, so it is a small tmpfs of its own (whose pages count against the
container's memory, as they are written by the container)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(None, use_errno=True)
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MNT_DETACH = 0x2
# A proxy directory holds a socket, the log directory and one activation's log file at a time.
_IO_DIR_INODES = 1024
_RELEASE_PASSES = 5


def _mount_tmpfs(path: Path, size_mb: int, uid: int, gid: int) -> None:
    options = f"size={size_mb}m,nr_inodes={_IO_DIR_INODES},mode=0700,uid={uid},gid={gid}"
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))


def _unmount(path: Path) -> None:
    # Lazily: the engine may still hold the bind of a container it is tearing down.
    if _libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))


def _mount_points() -> list[bytes]:
    with open("/proc/self/mounts", "rb") as mounts:
        # Spaces and other specials in mount points are octal escapes (\040).
        return [re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), line.split()[1])
                for line in mounts]


def _mount_points_under(root: Path) -> list[Path]:
    """Every mount at or below ``root``, once per mount (a path mounted twice is listed
    twice), deepest first so that nested mounts come off before their parents."""
    exact, prefix = os.fsencode(root), os.fsencode(root) + b"/"
    points = [Path(os.fsdecode(p)) for p in _mount_points() if p == exact or p.startswith(prefix)]
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def is_mount_point(path: Path) -> bool:
    """From the mount table: os.path.ismount misses a bind mount of a directory of the same
    file system (same device, and not its root)."""
    return os.fsencode(path) in _mount_points()


class IoDirs:
    """The proxy directories of one invoker, under ``root``, owned by the container user."""

    def __init__(self, root: Path, uid: int, gid: int, quota_mb: int) -> None:
        self.root = root
        self._uid, self._gid = uid, gid
        self._quota_mb = quota_mb

    def prepare(self, pool_id: str) -> Path:
        io_dir = self.root / pool_id
        release_io_dir(io_dir)
        io_dir.mkdir(parents=True)
        self._limit(io_dir)
        (io_dir / "logs").mkdir()
        for path in (io_dir, io_dir / "logs"):
            os.chown(path, self._uid, self._gid)
        return io_dir

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
        mounts. Until none is left: one made before the root was bound over itself is
        listed twice, and comes into sight only once the bind is gone."""
        for _ in range(_RELEASE_PASSES):
            points = _mount_points_under(self.root)
            if not points:
                break
            for point in points:
                with contextlib.suppress(OSError):  # the same path's other mount went first
                    _unmount(point)
        else:
            log.warning("mounts are left under %s", self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)


def release_io_dir(path: Path) -> None:
    """Unmount the tmpfs of one proxy directory (nothing is mounted below one), then delete
    it. Made for every container that goes, so it asks the kernel, not the mount table."""
    try:
        _unmount(path)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):  # not a mount point, or no dir
            log.warning("could not unmount %s: %s", path, exc)
    try:
        os.rmdir(path)  # empty once its tmpfs is gone
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
