"""``make images``: build ``Dockerfile.webhook`` and ``Dockerfile.sidecar`` for real, with podman.

No base image can be pulled here, so the Dockerfiles' ``FROM`` images are first
made from Debian's packages: ``debootstrap`` a bookworm rootfs holding what the
official ``python:*-slim-bookworm`` image provides (python, venv/ensurepip, CA
certificates), import it under the exact name the ``FROM`` line resolves to, and
add a C toolchain with a static libc for the build stage's name. A base that is
already there and is not a stand-in (pulled from a registry) is used as it is, so
on a machine with a registry the same Dockerfiles build from the real bases.

Every image is labelled with a content key of its inputs (for the bases: this
recipe; for the project images: the Dockerfile, the files it copies and the base
image IDs) and is rebuilt only when the key changes.

    python hack/images.py            # build what changed; print tags, sizes, times
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KEY_LABEL = "dev.latchkey.inputs"
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
SLIM_BASE = "docker.io/library/python:3.11.14-slim-bookworm"
BUILD_BASE = "docker.io/library/python:3.11.14-bookworm"
# What the official images hold that the Dockerfiles use: `python` (Debian's
# python-is-python3), `python -m venv` with ensurepip, CA certificates; and, for
# the build stage, cc with a static libc.
SLIM_PACKAGES = ["python3", "python3-venv", "python-is-python3", "ca-certificates"]
BUILD_PACKAGES = ["gcc", "libc6-dev"]
# Docs, man pages and apt's caches are not in the official slim image either.
TRIM = ["usr/share/doc", "usr/share/man", "usr/share/info", "var/cache/apt", "var/lib/apt/lists"]
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
PROJECT_FILES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md"]
PROJECT_DIRS = ["sidecar", "webhook"]
VERSION = "0.1.0"
IMAGES = {
    "webhook": f"localhost/latchkey-webhook:{VERSION}",
    "sidecar": f"localhost/latchkey-sidecar:{VERSION}",
}
# The runtime and limits this machine allows (crun refuses its cgroup layout;
# raising ulimits is not permitted).
RUNTIME = ["--runtime", "runc"]
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
# The build stand-in's pip trusts the system bundle, which a build mounts from the
# host: a package index behind a TLS-inspecting proxy is reachable that way.
BUILD_STAGE_FILE = f"""FROM {SLIM_BASE}
RUN apt-get update \\
    && apt-get install -y --no-install-recommends {" ".join(BUILD_PACKAGES)} \\
    && rm -rf /var/lib/apt/lists/* \\
    && printf '[global]\\ncert = {HOST_CA}\\n' > /etc/pip.conf
"""


class ImageError(RuntimeError):
    """A build step failed; the message names the step and carries its output's tail."""


@dataclass(frozen=True)
class Built:
    """One image: its tag, whether this run built it, how long that took, its size."""

    tag: str
    built: bool
    seconds: float
    size_bytes: int


def podman(*args: str, stdin: bytes | None = None) -> str:
    """Run podman; return stdout, or raise naming the command and podman's words."""
    podman_bin = shutil.which("podman")
    if podman_bin is None:
        raise ImageError("podman is not installed: apt-get install podman runc (or `make images`)")
    done = subprocess.run([podman_bin, *args], input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).decode(errors="replace").strip()[-3000:]
        raise ImageError(f"podman {' '.join(args[:2])} failed: {said}")
    return done.stdout.decode()


def inspect(tag: str) -> dict[str, Any] | None:
    """The image's ``podman image inspect`` record (Id, Size, Labels...), None if absent."""
    try:
        found: list[dict[str, Any]] = json.loads(podman("image", "inspect", tag))
    except ImageError:
        return None
    return found[0]


def label(tag: str) -> str | None:
    """The content key an image carries: None when there is no such image, "" when the
    image has no key (it came from a registry, not from this script)."""
    info = inspect(tag)
    return None if info is None else _key_of(info)


def _key_of(info: dict[str, Any]) -> str:
    return str((info.get("Labels") or {}).get(KEY_LABEL, ""))


def image_id(tag: str) -> str:
    info = inspect(tag)
    if info is None:
        raise ImageError(f"no image {tag}")
    return str(info["Id"])


def size(tag: str) -> int:
    info = inspect(tag)
    return 0 if info is None else int(info["Size"])


def digest(*parts: str | bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()[:32]


def project_key(dockerfile: str, bases: list[str]) -> str:
    """A key over every input of a project image: Dockerfile, copied files, bases."""
    files = [REPO / name for name in PROJECT_FILES]
    for directory in PROJECT_DIRS:
        files += sorted(
            path
            for path in (REPO / directory).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and "bin" not in path.parts
        )
    parts: list[str | bytes] = [
        (REPO / dockerfile).read_bytes(),
        (REPO / ".dockerignore").read_bytes(),
    ]
    for path in files:
        parts += [str(path.relative_to(REPO)), path.read_bytes()]
    return digest(*parts, *(image_id(base) for base in bases))


def _reuse(tag: str, key: str, *, pulled_ok: bool = False) -> Built | None:
    """The image when its key matches (or, for a base, when it came from a registry)."""
    info = inspect(tag)
    if info is None or not (_key_of(info) == key or (pulled_ok and _key_of(info) == "")):
        return None
    return Built(tag, built=False, seconds=0.0, size_bytes=int(info["Size"]))


def slim_base() -> Built:
    """The slim stand-in: a trimmed debootstrap rootfs imported under the FROM name."""
    key = digest("slim", SUITE, MIRROR, *SLIM_PACKAGES, *TRIM)
    if reused := _reuse(SLIM_BASE, key, pulled_ok=True):
        return reused
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed: apt-get install debootstrap")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="latchkey-rootfs-") as root:
        include = ",".join(SLIM_PACKAGES)
        argv = ["debootstrap", "--variant=minbase", f"--include={include}", SUITE, root, MIRROR]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ImageError(f"debootstrap of {SUITE} failed: {done.stdout[-2000:]}{done.stderr}")
        for trimmed in TRIM:
            shutil.rmtree(Path(root) / trimmed, ignore_errors=True)
        (Path(root) / "var/lib/apt/lists/partial").mkdir(parents=True)
        tar = subprocess.run(["tar", "-C", root, "-c", "."], capture_output=True, check=True)
        changes = [
            "--change", "ENV LANG=C.UTF-8",
            "--change", 'CMD ["python3"]',
            "--change", f"LABEL {KEY_LABEL}={key}",
        ]  # fmt: skip
        podman("import", *changes, "-", SLIM_BASE, stdin=tar.stdout)
    return Built(
        SLIM_BASE, built=True, seconds=time.monotonic() - started, size_bytes=size(SLIM_BASE)
    )


def build_base() -> Built:
    """The build-stage stand-in: the slim one plus cc and a static libc."""
    key = digest(BUILD_STAGE_FILE, image_id(SLIM_BASE))
    if reused := _reuse(BUILD_BASE, key, pulled_ok=True):
        return reused
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="latchkey-base-") as context:
        (Path(context) / "Containerfile").write_text(BUILD_STAGE_FILE, encoding="utf-8")
        _build(Path(context) / "Containerfile", context, BUILD_BASE, key)
    return Built(
        BUILD_BASE, built=True, seconds=time.monotonic() - started, size_bytes=size(BUILD_BASE)
    )


def _build(containerfile: Path, context: str | Path, tag: str, key: str) -> None:
    podman(
        "build", *RUNTIME, *ULIMITS, "--network", "host", "--pull=never",
        "--volume", f"{HOST_CA}:{HOST_CA}:ro",
        "--label", f"{KEY_LABEL}={key}", "--file", str(containerfile), "--tag", tag, str(context),
    )  # fmt: skip


def project_image(name: str) -> Built:
    """``Dockerfile.NAME`` built from the stand-in (or real) bases, unless unchanged."""
    tag, dockerfile = IMAGES[name], f"Dockerfile.{name}"
    key = project_key(dockerfile, [BUILD_BASE, SLIM_BASE])
    if reused := _reuse(tag, key):
        return reused
    started = time.monotonic()
    _build(REPO / dockerfile, REPO, tag, key)
    return Built(tag, built=True, seconds=time.monotonic() - started, size_bytes=size(tag))


def build_all() -> list[Built]:
    """The bases, then both project images; each only when its inputs changed. Our
    images left untagged by a rebuild (the one replaced, the build stage) are removed,
    so repeated builds do not fill the disk; nobody else's images are touched."""
    built = [slim_base(), build_base(), project_image("webhook"), project_image("sidecar")]
    if any(b.built for b in built):
        podman("image", "prune", "--force", "--filter", f"label={KEY_LABEL}")
    return built


def main() -> int:
    try:
        results = build_all()
    except ImageError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    for result in results:
        how = f"built in {result.seconds:.0f}s" if result.built else "unchanged, reused"
        print(f"{result.tag:52} {result.size_bytes / 1e6:6.1f} MB  {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
