"""Datasets on demand: ``zsiqa data fetch NAME`` and ``zsiqa data check NAME``.

``fetch`` downloads a dataset's public archive (pooch), checks its sha256 against the lock file (recorded on the first
fetch, checked on every later one), unpacks it beside its destination, verifies the result as ``check`` does, and only
then renames it into place: a folder at the destination is always a whole, verified dataset. An interrupted run
leaves no folder behind and the same command starts again. A dataset without a public download (or an archive
downloaded by hand) is unpacked from ``--archive FILE``; its manual steps are printed otherwise.

``check`` reads the dataset as the evaluation does (label files parsed, every listed image present, the official
counts) and decodes every image.
"""
from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from ..errors import DataError, MissingFileError, ZsiqaError, first_and_count, first_line
from ..files import atomic_write_text
from . import DATASETS, read_dataset

LOCK_FILE = "zsiqa-data.lock.json"  # beside the datasets: {name: {url, archive, sha256, bytes, fetched}}
DOWNLOADS = ".downloads"  # archives being downloaded or not yet unpacked, beside the datasets


class FetchError(ZsiqaError):
    """A dataset that could not be fetched: the message names the source, the file and what to do."""


@dataclass(frozen=True)
class Source:
    """Where dataset ``name`` comes from: ``url`` (None: no public download) and the manual steps."""

    name: str
    url: str | None
    manual: str


SOURCES = {s.name: s for s in (
    Source("kadid10k", "https://datasets.vqa.mmsp-kn.de/archives/kadid10k.zip",
           "download https://datasets.vqa.mmsp-kn.de/archives/kadid10k.zip (2.4 GB, the official KADID-10k archive: "
           "kadid10k/images/ and kadid10k/dmos.csv), then run `zsiqa data fetch kadid10k --archive kadid10k.zip`"),
    Source("tid2013", "https://www.ponomarenko.info/tid2013/tid2013.rar",
           "download https://www.ponomarenko.info/tid2013/tid2013.rar (the official TID2013 archive, RAR; unpacking "
           "it needs bsdtar, unrar or 7z on PATH, e.g. apt install libarchive-tools), then run `zsiqa data fetch "
           "tid2013 --archive tid2013.rar`"),
    Source("live", None,
           "LIVE Release 2 is distributed by the LIVE lab on request: ask for it on "
           "https://live.ece.utexas.edu/research/quality/subjective.htm, download databaserelease2.zip, then run "
           "`zsiqa data fetch live --archive databaserelease2.zip`"),
    Source("csiq", None,
           "CSIQ is distributed by its authors (https://s2.smu.edu/~eclarson/csiq.html): download src_imgs, dst_imgs "
           "and csiq.DMOS.xlsx, export the DMOS sheet to csiq_label.txt (lines \"<ref>.<TYPE>.<level>.png <dmos>\"), "
           "put the three in one folder CSIQ/ and zip it, then run `zsiqa data fetch csiq --archive CSIQ.zip` (or "
           "place the folder under $ZSIQA_DATA and run `zsiqa data check csiq`)"),
    Source("pipal", None,
           "PIPAL's training set is given on registration (NTIRE 2021/2022 Perceptual IQA challenge; see "
           "https://github.com/HaomingCai/PIPAL-dataset): put Train_Ref/, Train_Label/ and the distorted images "
           "(Distortion_1..4/ or Train_Dis/) in one folder PIPAL/, zip it, then run `zsiqa data fetch pipal "
           "--archive PIPAL.zip` (or place the folder under $ZSIQA_DATA and run `zsiqa data check pipal`)"),
)}


def check(name: str, root: str | os.PathLike, workers: int = 8) -> str:
    """Verify dataset ``name`` at ``root``: label files parsed, every listed image present, the official counts, every
    image decodable. Returns a one-line summary; raises naming what is wrong."""
    root = Path(root).expanduser()
    items = read_dataset(name, root, strict=True)
    files = sorted({str(p) for it in items for p in (it.ref, it.dis)})
    with ThreadPoolExecutor(workers) as pool:
        bad = [(f, why) for f, why in zip(files, pool.map(_undecodable, files)) if why]
    if bad:
        raise DataError(f"{DATASETS.get(name).title}: {first_and_count([f for f, _ in bad])} cannot be decoded "
                        f"({bad[0][1]}); fetch the dataset again or replace the file(s)")
    refs = len({it.ref_id for it in items})
    return f"{DATASETS.get(name).title} at {root}: {len(items)} pairs, {refs} references, {len(files)} images decoded"


def _undecodable(path: str) -> str | None:
    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def fetch(name: str, root: str | os.PathLike, url: str | None = None, archive: str | os.PathLike | None = None,
          keep_archive: bool = False) -> str:
    """Download (or take ``archive``), verify and unpack dataset ``name`` into ``root`` (``zsiqa data fetch``: where
    evaluate.py looks). ``url`` replaces the public source (a mirror). Returns a one-line summary."""
    spec = DATASETS.get(name)
    root = Path(root).expanduser()
    if root.exists():
        return f"{root} exists: {check(name, root)} (remove it to fetch again)"
    source = SOURCES.get(name, Source(name, None, f"no public download is known for {spec.title}"))
    url = url or source.url
    parent = root.parent
    lock = Lockfile(parent / LOCK_FILE)
    if archive is not None:
        archive = Path(archive).expanduser()
        if not archive.is_file():
            raise MissingFileError(f"--archive {archive}: no such file")
        origin = str(archive.resolve())
    elif url is None:
        raise FetchError(f"{spec.title} has no public download. Manual steps: {source.manual}")
    else:
        archive, origin = _download(spec.title, url, parent / DOWNLOADS, source.manual), url
    parent.mkdir(parents=True, exist_ok=True)  # only now: an offline or manual-only fetch leaves no empty folder
    downloaded = archive.parent == parent / DOWNLOADS  # a download of ours, not the user's own file
    digest = sha256(archive)
    recorded = lock.get(name)
    if recorded is not None and recorded["sha256"] != digest:
        if downloaded:
            archive.unlink()
        raise FetchError(
            f"{archive}: sha256 {digest} differs from {recorded['sha256']} recorded for {name} in {lock.path} "
            f"(from {recorded['origin']}); the archive is corrupt or the source changed, so it was refused"
            + (" and deleted. Run the same command again to download it anew" if downloaded else "")
            + f"; if the new archive is the right one, remove the {name!r} entry from {lock.path}")
    try:
        _unpack_verified(name, archive, root)
    except FetchError:
        if downloaded:  # not this dataset, or not whole: a rerun downloads it anew instead of failing on it again
            archive.unlink()
        raise
    lock.set(name, {"origin": origin, "archive": archive.name, "sha256": digest, "bytes": archive.stat().st_size,
                    "fetched": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    if downloaded and not keep_archive:
        archive.unlink()
    return f"{check(name, root)}; sha256 {digest[:16]}... recorded in {lock.path}"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(title: str, url: str, folder: Path, manual: str) -> Path:
    """``url`` into ``folder`` (pooch: a temporary file renamed when whole, so an interrupted download leaves nothing
    that is taken for the archive). Fails in seconds, with the manual steps, when the host cannot be reached."""
    import pooch
    import requests

    from ..backbones.weights import unreachable

    why = unreachable(url)
    if why:
        raise FetchError(f"{title}: cannot download {url}: {why}. Manual steps: {manual}")
    folder.mkdir(parents=True, exist_ok=True)
    pooch.get_logger().setLevel("WARNING")  # its INFO lines repeat the URL and suggest a hash: the lock file has it
    print(f"{title}: downloading {url} into {folder}", file=sys.stderr)
    name = Path(url.split("?")[0]).name or "archive"
    try:
        path = pooch.retrieve(url, known_hash=None, fname=name, path=folder, progressbar=False)
    except (requests.RequestException, OSError) as e:
        raise FetchError(f"{title}: downloading {url} failed ({type(e).__name__}: {first_line(e)}); nothing was "
                         f"kept, run the same command again. Manual steps: {manual}") from e
    return Path(path)


def _unpack_verified(name: str, archive: Path, root: Path) -> None:
    """Unpack ``archive`` next to ``root``, find the dataset folder in it, verify it, then rename it to ``root``."""
    for stale in root.parent.glob(f".{root.name}.partial-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        try:
            unpack(archive, work)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as e:
            raise FetchError(f"{archive} cannot be unpacked ({type(e).__name__}: {first_line(e)}): the archive is "
                             "corrupt or truncated; download it again") from e
        found = _dataset_folder(work)
        try:
            check(name, found)
        except (DataError, MissingFileError) as e:
            raise FetchError(f"{archive} does not hold {DATASETS.get(name).title} in its official layout "
                             f"({DATASETS.get(name).layout}): {e}") from e
        found.rename(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _dataset_folder(top: Path) -> Path:
    """The dataset's folder in an unpacked archive: ``top``, or the single folder it holds (``kadid10k/``), twice."""
    for _ in range(2):
        entries = [p for p in top.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        if len(entries) == 1 and entries[0].is_dir():
            top = entries[0]
    return top


def unpack(archive: Path, into: Path) -> None:
    """Unpack a zip, tar (any compression) or RAR (with bsdtar, unrar or 7z) archive, refusing members that would land
    outside ``into``."""
    name = archive.name.lower()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            _inside(into, z.namelist(), archive)
            z.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data")  # refuses absolute paths, .. and links out
    elif name.endswith(".rar"):
        for tool, args in (("bsdtar", ["-xf", str(archive), "-C", str(into)]),
                           ("unrar", ["x", "-idq", str(archive), str(into) + os.sep]),
                           ("7z", ["x", "-bd", "-y", f"-o{into}", str(archive)])):
            if shutil.which(tool):
                proc = subprocess.run([tool, *args], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise FetchError(f"{archive}: {tool} failed ({proc.stderr.strip()[-300:]})")
                return
        raise FetchError(f"{archive} is a RAR archive and none of bsdtar, unrar or 7z is installed; install one "
                         "(e.g. apt install libarchive-tools) or unpack it by hand and run `zsiqa data check`")
    else:
        raise FetchError(f"{archive}: not a zip, tar or RAR archive (corrupt or truncated?)")


def _inside(into: Path, names: list[str], archive: Path) -> None:
    base = into.resolve()
    for n in names:
        if not (into / n).resolve().is_relative_to(base):
            raise FetchError(f"{archive}: member {n!r} would be written outside the folder; refused")


class Lockfile:
    """The archives' sha256 per dataset, recorded on the first fetch (JSON, written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict:
        if not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError as e:
            raise FetchError(f"{self.path}: not valid JSON ({e}); fix it or remove it (the next fetch records the "
                             "archives again)") from e

    def get(self, name: str) -> dict | None:
        return self._read().get(name)

    def set(self, name: str, entry: dict) -> None:
        entries = self._read()
        entries[name] = entry
        atomic_write_text(self.path, json.dumps(entries, indent=2, sort_keys=True) + "\n")
