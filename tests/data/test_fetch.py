"""Datasets on demand: archives served by a local HTTP server (whole, cut mid-transfer, changed, in a wrong layout),
fetched into the layout the readers expect, verified, locked by sha256; ``zsiqa data check`` on any folder."""
from __future__ import annotations

import http.server
import io
import json
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from zsiqa.cli import main as cli_main
from zsiqa.data import build_demo, read_dataset
from zsiqa.data.fetch import DOWNLOADS, LOCK_FILE, FetchError, check, fetch, sha256
from zsiqa.errors import DataError, run_entry_point


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo") / "demo")


def zip_of(folder: Path, top: str | None = "demo", skip: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file() and f.name != skip:
                rel = f.relative_to(folder).as_posix()
                z.write(f, f"{top}/{rel}" if top else rel)
    return buf.getvalue()


class Server:
    """Serves ``files[path] = bytes``; ``cut`` paths send half their bytes under the full Content-Length, once."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.cut:
                    server.cut.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def leftovers(parent: Path) -> list[str]:
    """Partial folders and archives left beside the datasets."""
    hidden = [p.name for p in parent.iterdir() if p.name.startswith(".") and p.name != DOWNLOADS]
    return sorted(hidden + [p.name for p in (parent / DOWNLOADS).glob("*")])


def test_fetch_unpacks_verifies_records_the_checksum_and_the_reader_reads_it(tmp_path, server, demo_folder, capsys):
    archive = zip_of(demo_folder)
    server.files["/demo.zip"] = archive
    root = tmp_path / "data" / "demo"
    assert run_entry_point(lambda: cli_main(["data", "fetch", "demo", "--root", str(root), "--url",
                                             f"{server.url}/demo.zip"]), "zsiqa") == 0
    out = capsys.readouterr().out
    assert "pairs" in out and "sha256" in out
    items = read_dataset("demo", root)
    assert len(items) == len(read_dataset("demo", demo_folder)) and all(it.dis.is_file() for it in items)
    lock = json.loads((tmp_path / "data" / LOCK_FILE).read_text())
    import hashlib

    assert lock["demo"]["sha256"] == hashlib.sha256(archive).hexdigest() and lock["demo"]["bytes"] == len(archive)
    assert leftovers(tmp_path / "data") == []  # the archive is removed once unpacked; no partial folder
    again = fetch("demo", root, url=f"{server.url}/demo.zip")
    assert again.startswith(f"{root} exists") and server.requests == ["/demo.zip"]


def test_an_interrupted_download_leaves_nothing_and_the_same_command_finishes(tmp_path, server, demo_folder):
    server.files["/demo.zip"] = zip_of(demo_folder)
    server.cut.add("/demo.zip")
    root = tmp_path / "demo"
    with pytest.raises(FetchError, match="downloading .*demo.zip failed.*run the same command again"):
        fetch("demo", root, url=f"{server.url}/demo.zip")
    assert not root.exists() and leftovers(tmp_path) == []
    fetch("demo", root, url=f"{server.url}/demo.zip")
    assert read_dataset("demo", root) and server.requests == ["/demo.zip", "/demo.zip"]


def test_a_changed_archive_is_refused_deleted_and_named(tmp_path, server, demo_folder):
    server.files["/demo.zip"] = zip_of(demo_folder)
    fetch("demo", tmp_path / "first", url=f"{server.url}/demo.zip")
    changed = tmp_path / "changed"
    shutil.copytree(demo_folder, changed)
    (changed / "extra.txt").write_text("not the archive whose sha256 was recorded")
    server.files["/demo.zip"] = zip_of(changed)
    with pytest.raises(FetchError, match=r"demo.zip: sha256 [0-9a-f]{64} differs from [0-9a-f]{64} recorded for demo"
                                         r".*refused and deleted") as e:
        fetch("demo", tmp_path / "second", url=f"{server.url}/demo.zip")
    assert LOCK_FILE in str(e.value)
    assert not (tmp_path / "second").exists() and leftovers(tmp_path) == []


def test_a_wrong_layout_is_named_and_nothing_is_left(tmp_path, server, demo_folder):
    server.files["/demo.zip"] = zip_of(demo_folder, skip="meta.csv")
    with pytest.raises(FetchError, match=r"demo.zip does not hold demo in its official layout .*meta.csv"):
        fetch("demo", tmp_path / "demo", url=f"{server.url}/demo.zip")
    assert not (tmp_path / "demo").exists() and leftovers(tmp_path) == []
    assert not (tmp_path / LOCK_FILE).exists()  # nothing recorded for an archive that was not taken


def test_a_local_tar_archive_and_a_flat_zip_are_taken(tmp_path, demo_folder):
    tgz = tmp_path / "demo.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(demo_folder, arcname="demo")
    fetch("demo", tmp_path / "a" / "demo", archive=tgz)
    flat = tmp_path / "flat.zip"
    flat.write_bytes(zip_of(demo_folder, top=None))
    fetch("demo", tmp_path / "b" / "demo", archive=flat)
    assert read_dataset("demo", tmp_path / "a" / "demo") == read_dataset("demo", tmp_path / "a" / "demo")
    assert len(read_dataset("demo", tmp_path / "b" / "demo")) == len(read_dataset("demo", demo_folder))
    assert tgz.is_file() and flat.is_file()  # the user's own archives are kept
    assert json.loads((tmp_path / "a" / LOCK_FILE).read_text())["demo"]["sha256"] == sha256(tgz)


def test_a_truncated_archive_is_named_and_nothing_is_left(tmp_path, demo_folder):
    tgz = tmp_path / "demo.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(demo_folder, arcname="demo")
    tgz.write_bytes(tgz.read_bytes()[: tgz.stat().st_size // 2])
    with pytest.raises(FetchError, match=r"demo.tar.gz cannot be unpacked .*corrupt or truncated"):
        fetch("demo", tmp_path / "d" / "demo", archive=tgz)
    assert not (tmp_path / "d" / "demo").exists() and leftovers(tmp_path / "d") == []


def test_an_archive_member_outside_the_folder_is_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../outside.txt", "x")
    with pytest.raises(FetchError, match="outside the folder"):
        fetch("demo", tmp_path / "d" / "demo", archive=evil)
    assert not (tmp_path / "d" / "outside.txt").exists() and not (tmp_path / "outside.txt").exists()


def test_offline_fetch_is_one_line_with_the_source_and_the_manual_steps(tmp_path, monkeypatch, capsys):
    import zsiqa.backbones.weights as weights

    monkeypatch.setattr(weights, "unreachable", lambda url, timeout=3.0: "the network is unreachable: no connection")
    rc = run_entry_point(lambda: cli_main(["data", "fetch", "kadid10k", "--root", str(tmp_path / "data" / "kadid10k")]),
                         "zsiqa")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("zsiqa: error: KADID-10k: cannot download https://datasets.vqa.mmsp-kn.de/archives/"
                             "kadid10k.zip: the network is unreachable") and "--archive kadid10k.zip" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_datasets_without_a_public_download_print_their_manual_steps(tmp_path):
    with pytest.raises(FetchError, match=r"LIVE has no public download. Manual steps: .*databaserelease2.zip"):
        fetch("live", tmp_path / "databaserelease2")


def test_check_names_an_undecodable_image_and_passes_a_whole_folder(tmp_path, demo_folder, capsys):
    copy = tmp_path / "demo"
    shutil.copytree(demo_folder, copy)
    assert run_entry_point(lambda: cli_main(["data", "check", "demo", "--root", str(copy)]), "zsiqa") == 0
    n = len(read_dataset("demo", copy))
    assert f"{n} pairs" in capsys.readouterr().out
    victim = read_dataset("demo", copy)[3].dis
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(DataError, match=f"{victim}.*cannot be decoded"):
        check("demo", copy)
