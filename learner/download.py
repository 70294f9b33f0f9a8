"""Fetch the official MNIST and CIFAR-10 files into ``data.root`` (``data.download = true``).

Every file is checked against the MD5 published with it (the checksums
torchvision verifies), written atomically (a ``.part`` file renamed into place
only once its checksum is right) and resumed where it stopped: a ``.part``
left by an interrupted download is continued with an HTTP Range request (a
server that ignores Range restarts it). A checksum mismatch deletes the part
and keeps nothing. Without a network the error names the URLs tried and the
path where the file can be placed by hand.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    name: str
    checksum: str  # MD5, hex


MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_REMOTE = (
    RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
)
CIFAR10_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
CIFAR10_REMOTE = RemoteFile("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")


class DownloadError(RuntimeError):
    """A dataset could not be fetched or did not match its checksum; nothing half-written is kept."""


def md5_of(path: Path) -> str:
    digest = hashlib.new("md5", usedforsecurity=False)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, destination: Path, md5: str, timeout_s: float = 60.0) -> None:
    """Download ``url`` to ``destination`` (resuming a ``.part``), verify its MD5, then rename it into place."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            resumed = offset > 0 and response.status == 206
            with open(part, "ab" if resumed else "wb") as stream:
                shutil.copyfileobj(response, stream, CHUNK)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the part is already whole: verify it below
            pass
        else:
            raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{url}: {reason}") from error
    got = md5_of(part)
    if got != md5:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: checksum mismatch (MD5 {got}, expected {md5}); the download was deleted")
    os.replace(part, destination)


def fetch_from_mirrors(mirrors: tuple[str, ...], remote: RemoteFile, destination: Path) -> None:
    if destination.is_file() and md5_of(destination) == remote.checksum:
        return
    failures = []
    for mirror in mirrors:
        try:
            fetch(mirror + remote.name, destination, remote.checksum)
            return
        except DownloadError as error:
            failures.append(str(error))
    raise DownloadError(f"data.download: could not fetch {remote.name} ({'; '.join(failures)}). Without a "
                        f"network, download it from {mirrors[0] + remote.name} elsewhere and place it at "
                        f"{destination} (MD5 {remote.checksum})")


def download_mnist(root: Path) -> Path:
    """The four gzipped idx files into ``<root>/MNIST/raw/`` (torchvision's layout, which the reader takes)."""
    directory = Path(root).expanduser() / "MNIST" / "raw"
    for file in MNIST_REMOTE:
        fetch_from_mirrors(MNIST_MIRRORS, file, directory / file.name)
    return directory


def download_cifar10(root: Path) -> Path:
    """The binary-version archive, verified, then unpacked into ``<root>/cifar-10-batches-bin/`` atomically."""
    root = Path(root).expanduser()
    archive = root / CIFAR10_REMOTE.name
    fetch_from_mirrors(CIFAR10_MIRRORS, CIFAR10_REMOTE, archive)
    target = root / "cifar-10-batches-bin"
    staging = Path(tempfile.mkdtemp(prefix=".cifar-10.", dir=root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staging, filter="data")
        unpacked = staging / "cifar-10-batches-bin"
        if not unpacked.is_dir():
            raise DownloadError(f"data.download: {archive} holds no cifar-10-batches-bin/ directory")
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)
    except (tarfile.TarError, OSError) as error:
        raise DownloadError(f"data.download: cannot unpack {archive}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


DOWNLOADERS = {"mnist": download_mnist, "cifar10": download_cifar10}  # mirrors and checksums: module constants
