"""Output files: atomic writes, and a full disk as one clean error that names the file (never a traceback, never a
half-written file). /dev/full fails every write with ENOSPC, as a full disk does."""
import csv
import errno
import re
from pathlib import Path

import pytest
import torch

from zsiqa.errors import DiskFullError, ZsiqaError, out_of_space, run_entry_point
from zsiqa.files import atomic_save, atomic_write_text
from zsiqa.reporting.results import ScoreWriter, read_rows

FULL = Path("/dev/full")
pytestmark = pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full (Linux) to fail writes like a full disk")


def _fill_disk(path: Path, monkeypatch) -> Path:
    """Make the temporary file that an atomic write of ``path`` uses point at /dev/full."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.symlink_to(FULL)
    monkeypatch.setattr("zsiqa.files.temp_path", lambda p: tmp if p == path else p.with_name(f".{p.name}.x.tmp"))
    return tmp


@pytest.mark.parametrize("write", [
    lambda path: atomic_save(path, {"w": torch.arange(300_000.0)}),  # bigger than any buffer: the write itself fails
    lambda path: atomic_write_text(path, "x" * 300_000),
], ids=["torch", "text"])
def test_atomic_write_on_a_full_disk_names_the_file_and_leaves_no_partial_file(tmp_path, write, monkeypatch):
    path = tmp_path / "out" / "table.pt"
    path.parent.mkdir()
    path.write_text("old")
    tmp = _fill_disk(path, monkeypatch)
    with pytest.raises(DiskFullError, match=rf"^{re.escape(str(path))}: No space left on device .*run the same command again") as e:
        write(path)
    assert isinstance(e.value, OSError)  # `except OSError` still catches it
    assert not tmp.is_symlink() and path.read_text() == "old"  # the temporary file is gone, the old file untouched
    write(path)  # space again: the same call succeeds
    assert path.stat().st_size >= 300_000


def test_torch_files_round_trip(tmp_path):
    record = {"index": torch.arange(5), "terms": [torch.rand(5, 3)]}
    loaded = torch.load(atomic_save(tmp_path / "a.pt", record), weights_only=True)
    assert torch.equal(loaded["index"], record["index"]) and torch.equal(loaded["terms"][0], record["terms"][0])


def test_score_rows_on_a_full_disk_name_the_part_file_and_keep_the_rows_written(tmp_path):
    writer = ScoreWriter(tmp_path, 0, ["l2"])
    row = {"index": 0, "ref": "r.png", "dis": "d.png", "label": 1.0, "l2": 0.5, "error": ""}
    writer.write([row])
    part = tmp_path / "parts" / "rank0.csv"
    writer._file.close()
    writer._file = open(FULL, "ab", buffering=0)  # the disk fills up after the first batch
    with pytest.raises(DiskFullError, match=rf"^{re.escape(str(part))}: No space left on device"):
        writer.write([{**row, "index": 1}])
    writer.close()
    assert list(read_rows(tmp_path)) == [0]  # the first batch's row stays, for the rerun to skip
    with open(part, newline="") as f:
        assert [r["l2"] for r in csv.DictReader(f)] == ["0.5"]


def test_the_entry_boundary_turns_a_full_disk_into_one_line(tmp_path, capsys):
    def main():
        with open(FULL, "w") as f:
            f.write("x")
            f.flush()

    assert run_entry_point(main, "evaluate.py") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("evaluate.py: error: No space left on device (a write failed).")

    def other():
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    with pytest.raises(PermissionError):  # other OS errors are not disguised as a full disk
        run_entry_point(other, "evaluate.py")


def test_out_of_space_finds_the_os_error_torch_wraps():
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None
    except RuntimeError as e:
        wrapped = e
    full = out_of_space(wrapped, "runs/x/trained.pt")
    assert str(full).startswith("runs/x/trained.pt: Disk quota exceeded")
    assert out_of_space(RuntimeError("unrelated")) is None


def test_a_second_writer_of_the_same_part_file_is_refused_until_the_first_closes(tmp_path):
    """The same command started twice on one folder: the second stops at once instead of scoring every pair again."""
    first = ScoreWriter(tmp_path, 0, ["l2"])
    with pytest.raises(ZsiqaError, match=re.escape(f"{tmp_path / 'parts' / 'rank0.csv'}: another process is scoring")):
        ScoreWriter(tmp_path, 0, ["l2"])
    ScoreWriter(tmp_path, 1, ["l2"]).close()  # another rank of the same run has its own part
    first.close()
    again = ScoreWriter(tmp_path, 0, ["l2"])
    again.close()
    assert (tmp_path / "parts" / "rank0.csv").read_text().count("index,") == 1  # one header, not one per writer
