"""data.download: the real download code against a local HTTP server serving small files in the official formats.

The server (loopback only, stopped by the fixture) honours HTTP Range like the
official mirrors, so resuming is tested too. The module's mirrors and
checksums are pointed at it; everything else is the code users run.
"""

import gzip
import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import learner.download as download
from experiments.cli import main
from learner.data import load_dataset
from learner.download import DownloadError, RemoteFile

MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _mnist_files(n_train=40, n_test=20) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10,
              rng.integers(0, 256, (n_test, 28, 28)), (np.arange(n_test) * 3) % 10]
    return {f"{name}.gz": gzip.compress(_idx(array), mtime=0) for name, array in zip(MNIST_NAMES, arrays)}


def _cifar_archive() -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin", "batches.meta.txt"]:
            records = np.concatenate([rng.integers(0, 10, (3, 1)), rng.integers(0, 256, (3, 3072))], axis=1)
            data = records.astype(np.uint8).tobytes() if name.endswith(".bin") else b"airplane\n"
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Mirror:
    """Files served on 127.0.0.1 with Range support; records the requests it saw."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                mirror.requests.append((name, self.headers.get("Range")))
                body = mirror.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][6:].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _md5(data: bytes) -> str:
    return hashlib.new("md5", data).hexdigest()


@pytest.fixture
def mnist_mirror(monkeypatch):
    files = _mnist_files()
    mirror = Mirror(files)
    monkeypatch.setattr(download, "MNIST_MIRRORS", (mirror.url,))
    monkeypatch.setattr(download, "MNIST_REMOTE", tuple(RemoteFile(name, _md5(body)) for name, body in files.items()))
    yield mirror
    mirror.close()


def test_mnist_is_downloaded_verified_and_read_and_a_second_call_fetches_nothing(tmp_path, mnist_mirror):
    data = load_dataset("mnist", 0.2, 0, tmp_path, download=True)
    assert data.x_train.shape == (40, 784) and data.x_test.shape == (20, 784)
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == sorted(mnist_mirror.files)
    served = len(mnist_mirror.requests)
    load_dataset("mnist", 0.2, 0, tmp_path, download=True)
    assert len(mnist_mirror.requests) == served == 4


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path, mnist_mirror):
    name = "train-images-idx3-ubyte.gz"
    body = mnist_mirror.files[name]
    directory = tmp_path / "MNIST" / "raw"
    directory.mkdir(parents=True)
    (directory / f"{name}.part").write_bytes(body[:1000])  # what an interrupted download left
    download.download_mnist(tmp_path)
    assert (name, "bytes=1000-") in mnist_mirror.requests
    assert (directory / name).read_bytes() == body and not (directory / f"{name}.part").exists()


def test_a_checksum_mismatch_is_a_clear_error_and_leaves_nothing(tmp_path, mnist_mirror, monkeypatch):
    wrong = tuple(RemoteFile(f.name, "0" * 32) for f in download.MNIST_REMOTE)
    monkeypatch.setattr(download, "MNIST_REMOTE", wrong)
    with pytest.raises(DownloadError, match="checksum mismatch") as error:
        download.download_mnist(tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(error.value) and "0" * 32 in str(error.value)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no file, no .part


def test_offline_the_error_names_the_url_and_where_to_place_the_file(tmp_path, monkeypatch):
    mirror = Mirror({})
    url = mirror.url
    mirror.close()  # nothing listens there any more: like a machine without a network
    monkeypatch.setattr(download, "MNIST_MIRRORS", (url,))
    with pytest.raises(DownloadError) as error:
        download.download_mnist(tmp_path)
    message = str(error.value)
    assert url + "train-images-idx3-ubyte.gz" in message
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz") in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_cifar10_archive_is_verified_and_unpacked_atomically(tmp_path, monkeypatch):
    archive = _cifar_archive()
    mirror = Mirror({"cifar-10-binary.tar.gz": archive})
    monkeypatch.setattr(download, "CIFAR10_MIRRORS", (mirror.url,))
    monkeypatch.setattr(download, "CIFAR10_REMOTE", RemoteFile("cifar-10-binary.tar.gz", _md5(archive)))
    try:
        data = load_dataset("cifar10", 0.2, 0, tmp_path, download=True)
    finally:
        mirror.close()
    assert data.x_train.shape == (15, 3072) and data.x_test.shape == (3, 3072)
    assert not list(tmp_path.glob(".cifar-10.*"))  # no staging directory left


def test_a_run_with_data_download_fetches_then_trains(tmp_path, mnist_mirror, capsys):
    config = tmp_path / "download.toml"
    config.write_text(f'rounds = 2\ndevices = 4\n[data]\ndataset = "mnist"\ndownload = true\n'
                      f'root = "{tmp_path / "data"}"\nbatch_size = 4\n[network]\nlink_model = "synthetic"\n')
    code = main(["run", str(config), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache"),
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_without_download_missing_files_are_a_config_error_that_suggests_it(tmp_path, capsys):
    config = tmp_path / "missing.toml"
    config.write_text(f'[data]\ndataset = "mnist"\nroot = "{tmp_path / "nowhere"}"\n')
    assert main(["run", str(config), "--results", str(tmp_path / "results")]) == 2
    assert "data.download = true" in capsys.readouterr().err
