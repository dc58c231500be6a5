"""The Python runtime's zygote: an interpreter that has imported the action proxy once and
forks each new sandbox the invoker asks for from itself, so a cold start skips the
interpreter's start and the proxy's imports (most of a sandbox's start-up).

It runs in a sandbox of its own, started by bubblewrap: root of a user namespace of its own
(uid 1000 outside), whose capabilities reach nothing outside that namespace but are enough to
give each child namespaces and mounts of its own. Its /ft is the invoker's whole proxy
directory root. Each child, before any action code runs:

1. is pid 1 of a pid namespace of its own from its first instruction (the zygote unshares
   one for its next child before each fork, and returns to its own after);
2. joins its sandbox's cgroups through descriptors the invoker opened (the kernel checks the
   rights of whoever opened them: the invoker's);
3. unshares mount, net, ipc, uts and cgroup namespaces, mounts a fresh /proc (/proc/sys
   read-only), tmpfs /tmp and /dev/shm, and keeps only its own proxy directory at /ft (the
   zygote's view of every other sandbox's is detached, not merely covered);
4. becomes uid and gid 1000 in a user namespace of its own, drops every capability, sets
   no_new_privs and loads the sandboxes' seccomp filter (which refuses new namespaces);
5. becomes the proxy, and reports over the socket the invoker gave it once the proxy's
   socket listens (the kernel adds its pid, as the invoker sees it).

The zygote is pid 1 of its own pid namespace (bubblewrap's ``--as-pid-1``), which every
sandbox's is nested in: when it ends, however it ends, the kernel ends them all. So it alone
watches the invoker's lifeline, and its children need no watcher of their own.

Protocol: the control socket (``FT_ZYGOTE_FD``, a SOCK_SEQPACKET socketpair with the
invoker) carries one JSON request per message, with descriptors [report socket, stderr,
cgroup.procs...]. Nothing is answered on it: a child that fails writes why to its stderr and
exits, and its report socket closes unreported. A request ``{"spare": true}`` makes a child
that does step 1 at once, then waits for its real request on its report socket (a closed
socket ends it). Standard library only, as the proxy.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import resource
import select
import signal
import socket
import sys
from collections.abc import Callable

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _ft_logs  # noqa: E402
import proxy  # noqa: E402  (imported once here: the point of a zygote)

del sys.path[0]

# What the proxy imports on first use for every action given as source: imported once here,
# rather than by every sandbox, each finding, reading and running the module again. (Not what
# only zip actions need: a bigger zygote makes every fork and exit dearer.)
PRELOADED = ("linecache", "traceback")

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER = 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
CONTAINER_ID = 1000  # the uid and gid actions run as, in the runtime images too
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x2000, 0x4000, 1 << 18
MNT_DETACH = 2
PR_SET_SECCOMP, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 22, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

with open("/proc/sys/kernel/cap_last_cap") as _last_cap:
    LAST_CAP = int(_last_cap.read())  # read once: a child's /proc is its own

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Filter:
    """The sandboxes' seccomp program, made loadable once, in the zygote."""

    def __init__(self, program: bytes) -> None:
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self.fprog = SockFprog(len(program) // 8, ctypes.cast(self._buffer, ctypes.c_void_p))


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(libc.mount(_bytes(source), target.encode(), _bytes(fstype), flags, _bytes(data)),
           f"mount {target}")


def _bytes(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _detach(target: str) -> None:
    _check(libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


def _swap_in(target: str, mount_new: Callable[[str], None]) -> None:
    """Mount something new at ``target`` in place of what is there, the old mount detached
    (not left underneath): mounted beside it first, on /tmp, then moved over."""
    staging = f"/tmp/.ft-{os.path.basename(target)}"
    os.mkdir(staging)
    mount_new(staging)
    _detach(target)
    _mount(staging, target, None, MS_MOVE)
    os.rmdir(staging)


def _new_proc(at: str) -> None:
    _mount("proc", at, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _become_container_user() -> None:
    """uid and gid 1000 in a user namespace of its own, mapped to the zygote's root (uid 1000
    outside), with no supplementary groups. Entered last: its mounts are made by then."""
    _check(libc.unshare(CLONE_NEWUSER), "unshare user")
    for name, value in (("setgroups", "deny"), ("uid_map", f"{CONTAINER_ID} 0 1"),
                        ("gid_map", f"{CONTAINER_ID} 0 1")):
        with open(f"/proc/self/{name}", "w") as control:
            control.write(value)


def _drop_privileges(seccomp: Filter) -> None:
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "ambient caps")
    for cap in range(LAST_CAP + 1):
        _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop cap {cap}")
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: none, both halves
    _check(libc.syscall(SYS_CAPSET[os.uname().machine], header, data), "capset")
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(seccomp.fprog), 0,
                      0), "seccomp")


def _join_cgroups(cgroup_procs: list[int]) -> None:
    for procs in cgroup_procs:
        os.write(procs, b"0")  # "0": the writer itself
        os.close(procs)


def _become_sandbox(request: dict, report: int, stderr: int, seccomp: Filter) -> None:
    """In the forked child (pid 1 of its pid namespace), once in its cgroups: everything up
    to the proxy's start, the report socket still to be used."""
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
                        | CLONE_NEWCGROUP), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing it mounts reaches the zygote
    socket.sethostname(request["hostname"])
    tmpfs = f"size={request['tmpfs']},mode=1777"
    for target in ("/tmp", "/dev/shm"):
        _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, tmpfs)
    _swap_in("/ft", lambda at: _mount(f"/ft/{request['io_dir']}", at, None, MS_BIND))
    _swap_in("/proc", _new_proc)
    _mount("/proc/sys", "/proc/sys", None, MS_BIND | MS_REC)
    _mount(None, "/proc/sys", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
           | MS_NOEXEC)
    os.setsid()
    nofile = request["nofile"]
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    devnull = os.open("/dev/null", os.O_RDWR)
    for target, source in ((0, devnull), (1, devnull), (2, stderr)):
        os.dup2(source, target)
    os.dup2(stderr, _ft_logs.DIAG_FD)  # the proxy's own messages (its copy of the zygote's)
    keep = {0, 1, 2, _ft_logs.DIAG_FD, report}
    for fd in os.listdir("/proc/self/fd"):
        if int(fd) not in keep:
            with contextlib.suppress(OSError):  # the listing's own descriptor is gone
                os.close(int(fd))
    _become_container_user()
    _drop_privileges(seccomp)
    _set_environment(request["env"])
    os.chdir(request.get("workdir") or "/tmp")


def _fork_into_new_pid_namespace(own_pid_namespace: int) -> int:
    """os.fork, the child pid 1 of a new pid namespace: one fork, where unsharing in the
    child would need a second (and a copy of this whole interpreter's page tables each)."""
    _check(libc.unshare(CLONE_NEWPID), "unshare pid")  # for the next child only
    try:
        pid = os.fork()
    except BaseException:
        _check(libc.setns(own_pid_namespace, CLONE_NEWPID), "setns pid")
        raise
    if pid:  # the next child's is the zygote's own again
        _check(libc.setns(own_pid_namespace, CLONE_NEWPID), "setns pid")
    return pid


def _set_environment(env: dict[str, str]) -> None:
    """Make the environment ``env``, changing only what differs from the zygote's (mostly the
    same: the image's): each change is a libc call, and each key a dictionary's pages."""
    for key in [key for key in os.environ if key not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _spawn(request: dict, fds: list[int], seccomp: Filter, own_pid_namespace: int) -> None:
    """Fork one sandbox, or a spare one (``request["spare"]``) that joins its cgroups now and
    waits on its report socket for the request that makes it a sandbox (joining is what
    costs on cgroup v1). The zygote closes its copies of the descriptors either way (so a
    child that could not be forked is reported as not started)."""
    try:
        pid = _fork_into_new_pid_namespace(own_pid_namespace)
    except OSError as exc:
        os.write(2, f"ft-zygote: cannot fork a sandbox: {exc}\n".encode())
        pid = -1
    if pid:
        for fd in fds:
            os.close(fd)
        return
    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        report_fd, stderr, *cgroup_procs = fds
        _join_cgroups(cgroup_procs)
        report = socket.socket(fileno=report_fd)
        if request.get("spare"):
            message = report.recv(65536)
            if not message:
                os._exit(0)  # the invoker no longer wants it
            request = json.loads(message)
        _become_sandbox(request, report_fd, stderr, seccomp)

        def listening() -> None:  # the invoker's first connection then finds the socket
            report.send(b"up")
            report.close()

        proxy.main(listening)
    except BaseException as exc:  # a child never returns into the zygote's loop
        os.write(2, f"ft-zygote: sandbox {request.get('id')} did not start: {exc}\n".encode())
        code = 125
    os._exit(code)


def main() -> None:
    control = socket.socket(fileno=int(os.environ.pop("FT_ZYGOTE_FD")))
    with open(int(os.environ.pop("FT_SECCOMP_FD")), "rb") as program:
        seccomp = Filter(program.read())
    given = os.environ.pop("FT_LIFELINE_FD", None)
    lifeline = int(given) if given is not None else None
    own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    for name in PRELOADED:
        importlib.import_module(name)
    # Everything the zygote made so far is left out of the collector's walks: a child's
    # collections would otherwise write to every page of it, and copy each one it shares.
    gc.freeze()
    # Children that leave are reaped by the kernel: the zygote waits for none of them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # The lifeline (its invoker's end of it) ends the zygote, and so every sandbox it made.
    poller = select.poll()
    poller.register(control, select.POLLIN)
    if lifeline is not None:
        poller.register(lifeline, select.POLLIN | select.POLLHUP)
    while True:
        ready = dict(poller.poll())
        if lifeline in ready and proxy.lifeline_ended(lifeline):
            break
        if control.fileno() not in ready:
            continue
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, 65536, 64)
        except OSError:
            break
        if not message:
            break  # the invoker closed its end: it has gone, or no longer needs us
        try:
            request = json.loads(message)
        except ValueError:
            for fd in fds:
                os.close(fd)
            continue
        _spawn(request, fds, seccomp, own_pid_namespace)


if __name__ == "__main__":
    main()
