"""The sandboxes' seccomp filter, compiled by libseccomp (through ctypes: the library every
container runtime uses, present wherever bubblewrap is) into the BPF program bubblewrap loads.

What it refuses (EPERM) is what Docker's default profile refuses to a container without
capabilities: the kernel's administrative and namespace-changing calls (clone included, when
asked for a namespace), kernel keyrings,
module loading, clock setting, tracing other processes' memory, BPF and perf events. An
action needs none of them; each one is a known way out of a container.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import tempfile
from functools import lru_cache
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
__NR_SCMP_ERROR = -1

REFUSED = (
    # mounts and namespaces
    "mount", "umount2", "pivot_root", "chroot", "setns", "unshare", "fsopen", "fsmount",
    "fsconfig", "fspick", "move_mount", "open_tree", "mount_setattr",
    # the kernel itself
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "_sysctl", "sysfs",
    "uselib", "ustat", "lookup_dcookie", "nfsservctl", "vhangup", "iopl", "ioperm",
    "create_module", "get_kernel_syms", "query_module",
    # clocks
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
    # keyrings, BPF, perf, userfaultfd
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    # other processes' memory and file handles by id
    "process_vm_readv", "process_vm_writev", "kcmp", "open_by_handle_at",
    "name_to_handle_at", "ptrace",
)


# clone's namespace flags: mount, cgroup, uts, ipc, user, pid, net.
CLONE_NEW = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
             0x40000000)
_SCMP_CMP_MASKED_EQ = 7  # (argument & datum_a) == datum_b


class _ArgCmp(ctypes.Structure):  # libseccomp's struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


class SeccompUnavailable(OSError):
    pass


def _add(lib: ctypes.CDLL, ctx: int, action: int, name: str, *conditions: _ArgCmp) -> None:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr == __NR_SCMP_ERROR:
        return  # not a call on this architecture
    array = (_ArgCmp * len(conditions))(*conditions)
    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(conditions), array)
    if rc < 0:
        raise SeccompUnavailable(f"seccomp rule for {name} failed: {os.strerror(-rc)}")


def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(f"libseccomp is not installed ({exc})") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.c_void_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


@lru_cache(maxsize=1)
def filter_program() -> bytes:
    """The compiled filter (BPF for this machine's architecture), built once per process."""
    lib = _library()
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        refuse = _SCMP_ACT_ERRNO | errno.EPERM
        for name in REFUSED:
            _add(lib, ctx, refuse, name)
        # clone may make threads and processes, not namespaces (a user namespace would give
        # back every capability inside it); clone3 passes its flags in memory a filter
        # cannot read, so it is "not implemented" and the C library falls back to clone.
        for flag in CLONE_NEW:
            _add(lib, ctx, refuse, "clone", _ArgCmp(0, _SCMP_CMP_MASKED_EQ, flag, flag))
        _add(lib, ctx, _SCMP_ACT_ERRNO | errno.ENOSYS, "clone3")
        with tempfile.TemporaryFile() as out:
            rc = lib.seccomp_export_bpf(ctx, out.fileno())
            if rc < 0:
                raise SeccompUnavailable(f"seccomp_export_bpf failed: {os.strerror(-rc)}")
            out.seek(0)
            return out.read()
    finally:
        lib.seccomp_release(ctx)


def write_program(path: Path) -> Path:
    """The filter in a file bubblewrap can be handed (as an open descriptor) per sandbox."""
    path.write_bytes(filter_program())
    return path
