"""`ft runtimes build`: build the runtime images without a container registry.

The base image is a Debian bookworm root made by debootstrap from the machine's own apt mirror
and loaded with `docker import`, so nothing is pulled from a registry. Each runtime family's
Dockerfile is then built FROM it (or FROM an official image given with --base where a registry
exists). One base serves every runtime family. Runtime images carry a label with a hash of
their sources, so a rebuild only happens when the proxy or Dockerfile changed; the base carries
one with a hash of its recipe (suite, packages, ...), so changing the recipe rebuilds it once.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from runtimes.kinds import RUNTIMES

RUNTIMES_DIR = Path(__file__).resolve().parent
SOURCE_LABEL = "funtainer.source"
BASE_LABEL = "funtainer.base"
SUITE = "bookworm"
# python3, not python3-minimal: the minimal package lacks json, asyncio and http.
# nodejs: bookworm's is 18.x (with libnode and ICU, ~90 MB of the image).
BASE_PACKAGES = ("python3", "nodejs", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
INSTALL_HINT = "apt-get install docker.io debootstrap"

# What a runtime never needs and only makes the image bigger. Copyright files are kept.
STRIP_GLOBS = (
    "var/lib/apt/lists/*",
    "var/cache/apt/*",
    "var/cache/debconf/*-old",
    "var/log/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian/*",
    "usr/share/doc/*/*",
)

# Dockerfile instructions applied by `docker import` to the debootstrap root.
IMPORT_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)

Progress = Callable[[str], None]


def _meter(progress: Progress, stage: str, done: int, total: int | None) -> bool:
    """How far along ``stage`` is, for a progress that draws it (cli.progress.Progress has
    ``update``); False when ``progress`` only takes lines."""
    update = getattr(progress, "update", None)
    if update is None:
        return False
    update(stage, done, total)
    return True

_PHASES = {
    "Retrieving": "downloading",
    "Validating": "downloading",
    "Extracting": "extracting",
    "Unpacking": "unpacking",
    "Configuring": "configuring",
}


class BuildError(Exception):
    """A build step failed; the message is one line meant for the user."""


def base_image(prefix: str) -> str:
    return f"{prefix}/base:{SUITE}"


def base_recipe_hash() -> str:
    """Hash of what the base image is made of. The mirror is not part of it: any mirror of
    the suite gives the same root."""
    recipe = {
        "suite": SUITE,
        "variant": "minbase",
        "packages": sorted(BASE_PACKAGES),
        "strip": list(STRIP_GLOBS),
        "changes": list(IMPORT_CHANGES),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def apt_mirror(
    sources: Path = Path("/etc/apt/sources.list.d/debian.sources"),
    legacy: Path = Path("/etc/apt/sources.list"),
) -> str:
    """The Debian mirror this machine's apt uses (it is the one we can reach)."""
    if sources.is_file():
        # deb822 stanzas: take the one serving the release itself, not -security/-updates.
        for stanza in re.split(r"\n\s*\n", sources.read_text()):
            fields = dict(_deb822_fields(stanza))
            suites = fields.get("suites", "").split()
            uris = fields.get("uris", "").split()
            if uris and (not suites or any("-" not in s for s in suites)):
                return uris[0].rstrip("/")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb" and "-" not in words[2]:
                return words[1].rstrip("/")
    return DEFAULT_MIRROR


def _deb822_fields(stanza: str) -> Iterable[tuple[str, str]]:
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, _, value = line.partition(":")
        yield key.strip().lower(), value.strip()


def source_hash(folder: Path, base_id: str) -> str:
    """Hash of a family folder's files (names and contents) and of the base image's id, so a
    changed proxy or a rebuilt base both lead to a rebuild."""
    digest = hashlib.sha256(f"base={base_id}\n".encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        digest.update(f"{rel.as_posix()}\n{path.stat().st_size}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise BuildError(f"docker {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _image_id(image: str) -> str | None:
    proc = _docker("image", "inspect", "--format", "{{.Id}}", image, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _image_label(image: str, label: str) -> str | None:
    fmt = "{{index .Config.Labels " + f'"{label}"' + "}}"
    proc = _docker("image", "inspect", "--format", fmt, image, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BuildError(f"{' and '.join(missing)} not found; install with: {INSTALL_HINT}")


def _unmount_below(root: Path) -> None:
    """debootstrap mounts /proc and /sys inside the target; an interrupted run can leave them
    mounted, and removing the tree then would walk into the host's /proc and /sys."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _run_debootstrap(root: Path, mirror: str, progress: Progress) -> None:
    """Run debootstrap, condensing its hundreds of per-package lines to one line per phase."""
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        SUITE,
        str(root),
        mirror,
    ]
    progress(f"  $ {' '.join(cmd)}")
    start = time.monotonic()
    tail: deque[str] = deque(maxlen=30)  # shown on failure
    phase, count, packages = "", 0, None
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        tail.append(line)
        verb = re.match(r"I: (Retrieving|Validating|Extracting|Unpacking|Configuring) ", line)
        if verb:
            # Each package is retrieved then validated: one phase, not two alternating.
            name = _PHASES[verb.group(1)]
            metered = hasattr(progress, "update")
            if name != phase:
                if phase == "downloading":
                    packages = count  # every later phase goes over the same packages
                if phase and not metered:
                    progress(f"  debootstrap: {phase} done ({count} items)")
                phase, count = name, 0
                if not metered:
                    progress(f"  debootstrap: {phase}... [{time.monotonic() - start:.0f}s]")
            count += verb.group(1) != "Validating"
            _meter(progress, f"base image: {phase} packages", count,
                   None if phase == "downloading" else packages)
        elif line.startswith(("W:", "E:")) or (line.startswith("I:") and "success" in line):
            progress(f"  debootstrap: {line}")
    if proc.wait() != 0:
        progress("\n".join(f"  | {line}" for line in tail))
        raise BuildError(f"debootstrap failed with exit code {proc.returncode} (see above)")
    progress(f"  debootstrap finished in {time.monotonic() - start:.1f}s")


def _strip(root: Path) -> None:
    for pattern in STRIP_GLOBS:
        for path in root.glob(pattern):
            if path.name == "copyright" and path.parent.parent.name == "doc":
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def build_base(image: str, progress: Progress) -> None:
    """debootstrap a minimal bookworm root with BASE_PACKAGES and `docker import` it as
    ``image``, labelled with its recipe's hash."""
    _require_tools("debootstrap")
    if os.geteuid() != 0:
        raise BuildError("building the base image needs root (debootstrap creates device nodes)")
    mirror = apt_mirror()
    progress(f"base image {image}: debootstrap {SUITE} from {mirror}")
    start = time.monotonic()
    # On disk, not a tmpfs: the root is ~150 MB before stripping.
    workdir = Path(tempfile.mkdtemp(prefix="ft-base-", dir="/var/tmp"))
    root = workdir / "root"
    try:
        _run_debootstrap(root, mirror, progress)
        _unmount_below(root)
        _strip(root)
        progress(f"  importing into docker as {image}")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        changes = [*IMPORT_CHANGES, f"LABEL {BASE_LABEL}={base_recipe_hash()}"]
        imported = subprocess.run(
            ["docker", "import", *(f"--change={change}" for change in changes), "-", image],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise BuildError(f"docker import failed: {imported.stderr.strip()}")
    finally:
        _unmount_below(root)
        shutil.rmtree(workdir, ignore_errors=True)
    progress(f"base image {image} built in {time.monotonic() - start:.1f}s")


def build_runtime(image: str, folder: Path, base: str, force: bool, progress: Progress) -> bool:
    """Build one runtime image unless the tagged image already has the same source hash.
    Returns whether a build ran."""
    previous = _image_id(image)
    base_id = _image_id(base)
    if base_id is None:
        raise BuildError(f"base image {base} not found")
    wanted = source_hash(folder, base_id)
    if not force and _image_label(image, SOURCE_LABEL) == wanted:
        progress(f"runtime image {image}: up to date")
        return False
    progress(f"runtime image {image}: docker build {folder.relative_to(RUNTIMES_DIR.parent)}")
    start = time.monotonic()
    proc = subprocess.run(
        [
            "docker",
            "build",
            "--quiet",
            "-t",
            image,
            "--build-arg",
            f"BASE={base}",
            "--label",
            f"{SOURCE_LABEL}={wanted}",
            str(folder),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        for line in (proc.stdout + proc.stderr).strip().splitlines()[-20:]:
            progress(f"  | {line}")
        raise BuildError(f"docker build of {image} failed (see above)")
    progress(f"runtime image {image} built in {time.monotonic() - start:.1f}s")
    _remove_superseded(previous, image)
    return True


def _remove_superseded(image_id: str | None, image: str) -> None:
    """Drop the image a rebuild replaced (119 MB each), unless a container still uses it or
    another tag names it: then `docker rmi` refuses, which is what we want."""
    # A rebuild served from the build cache may be the very same image: keep it, of course.
    if image_id is not None and image_id != _image_id(image):
        _docker("rmi", image_id, check=False)


def build_images(
    prefix: str = "funtainer",
    force: bool = False,
    progress: Progress = print,
    base: str | None = None,
) -> list[str]:
    """Make sure the base image (unless ``base`` names a registry image) and every runtime
    image exist and are current. Returns the runtime image names. Raises BuildError."""
    _require_tools("docker")
    if _docker("version", "--format", "{{.Server.Version}}", check=False).returncode != 0:
        raise BuildError("cannot reach the Docker engine (is dockerd running? are you root?)")
    with _build_lock():
        return _build_locked(prefix, force, progress, base)


@contextmanager
def _build_lock() -> Iterator[None]:
    """Several test sessions or `ft up`s may start at once: one debootstrap is enough."""
    path = os.path.join(tempfile.gettempdir(), "funtainer-runtimes-build.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # someone else's lock file we may not open: build unserialized
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _build_locked(prefix: str, force: bool, progress: Progress, base: str | None) -> list[str]:
    old_base = None
    if base is None:
        base = base_image(prefix)
        old_base = _image_id(base)
        if force or old_base is None:
            build_base(base, progress)
        elif _image_label(base, BASE_LABEL) != base_recipe_hash():
            # E.g. a package added for a new runtime family: every runtime image then
            # rebuilds too, their source hashes include the base's id.
            progress(f"base image {base}: recipe changed, rebuilding")
            build_base(base, progress)
        else:
            progress(f"base image {base}: present")
            old_base = None
    elif _image_id(base) is None:
        progress(f"base image {base}: docker pull")
        _docker("pull", base)
    images: list[str] = []
    families = {runtime.image_name for runtime in RUNTIMES.values()}
    _meter(progress, "runtime images", 0, len(families))
    for runtime in RUNTIMES.values():
        image = f"{prefix}/{runtime.image_name}"
        if image in images:
            continue
        folder = RUNTIMES_DIR / runtime.family
        if not (folder / "Dockerfile").is_file():
            raise BuildError(f"runtime family {runtime.family!r} has no {folder}/Dockerfile")
        build_runtime(image, folder, base, force, progress)
        images.append(image)
        _meter(progress, "runtime images", len(images), len(families))
    _remove_superseded(old_base, base)  # after the runtime images built on it are gone
    return images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ft runtimes build", description="Build the runtime container images."
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--prefix", default="funtainer", help="image name prefix")
    parser.add_argument(
        "--base",
        help="build FROM this registry image (e.g. python:3.11-slim) instead of a debootstrap base",
    )
    args = parser.parse_args(argv)
    start = time.monotonic()
    from cli.progress import Progress

    progress = Progress()
    try:
        images = build_images(args.prefix, args.force, progress=progress, base=args.base)
    except BuildError as exc:
        progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        progress.close()
        print("error: interrupted", file=sys.stderr)
        return 130
    progress.close()
    print(f"runtime images ready in {time.monotonic() - start:.1f}s: {', '.join(images)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
