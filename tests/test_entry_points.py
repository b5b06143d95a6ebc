"""The command lines end to end on bad input: exit codes, one line per error, no traceback (``zsiqa`` and
``evaluate.py`` in subprocesses)."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import CLI, REPO, cli, decode_message, encoded, rgb
from PIL import Image

from zsiqa.cli import main as cli_main
from zsiqa.errors import InputError

# ------------------------------------------------------------------------------------------------ subprocesses

def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zsiqa.cli", *args], cwd=REPO, capture_output=True, text=True,
                          check=False, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_cli_subprocess_exit_codes_and_no_traceback(files):
    bmp = files["truncated.bmp"]
    proc = run_cli("score", str(files["ok.png"]), str(bmp), *CLI)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert re.fullmatch(f"zsiqa: error: {decode_message('truncated.bmp', bmp, files)}\n", proc.stderr)
    proc = run_cli("score", str(files["ok.png"]), str(files["ok.png"]), "--backbone", "nope", "--random-init")
    assert proc.returncode == 2 and proc.stderr.startswith("zsiqa: error: unknown backbone 'nope'; available:")
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    proc = run_cli("--debug", "score", str(files["text.png"]), str(files["ok.png"]), *CLI)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "zsiqa.errors.InputError: not an image" in proc.stderr


def test_cli_usage_and_config_errors_exit_2(files, capsys, monkeypatch):
    code, _, err = cli(capsys, "score", str(files["ok.png"]), str(files["ok.png"]), *CLI, "--distance", "l3")
    assert code == 2 and err.startswith("zsiqa: error: unknown distance 'l3'; available:") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_:  # argparse: a usage error
        cli_main(["score", "a.png", "b.png", "--preset", "bogus"])
    assert exit_.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
    monkeypatch.setenv("ZSIQA_DEBUG", "1")  # expected errors propagate with their traceback
    with pytest.raises(InputError, match="empty file"):
        cli_main(["score", str(files["empty.png"]), str(files["ok.png"]), *CLI])


# ------------------------------------------------------------------------------------------------ evaluate.py

def run_evaluate(capsys, *args: str) -> tuple[int, str]:
    """``python evaluate.py ARGS`` behind its entry point's error boundary -> (exit code, stderr).

    The one place these tests reach evaluate.py: re-point it when the entry point changes (e.g. to a subprocess).
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("evaluate_entry_point", REPO / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    code = module.main(list(args))  # the entry point's own boundary: one line, exit code
    return code, capsys.readouterr().err


def error_line(err: str) -> str:
    """The entry point's one error line (Lightning's INFO lines and the progress bar share stderr)."""
    assert err.count("evaluate.py: error: ") == 1, err
    return "evaluate.py: error: " + err.split("evaluate.py: error: ")[1].rstrip("\n")


def demo_folder(root: Path, dis: dict[str, bytes], rows: list[tuple[str, str]] | None = None) -> Path:
    """A demo-layout dataset: ref/r0.png (32x32) and the given distorted files, labels 1, 2, ... in meta.csv."""
    (root / "ref").mkdir(parents=True)
    (root / "dis").mkdir()
    Image.fromarray(rgb(32, 32)).save(root / "ref" / "r0.png")
    for name, data in dis.items():
        (root / "dis" / name).write_bytes(data)
    rows = rows or [("ref/r0.png", f"dis/{name}") for name in dis]
    text = "ref_name,dist_name,score,dist_type,level\n" + "".join(
        f"{r},{d},{k + 1},t,{k + 1}\n" for k, (r, d) in enumerate(rows))
    (root / "meta.csv").write_text(text)
    return root


def test_evaluate_py_bad_images_and_labels(tmp_path, capsys):
    """Dataset cases through evaluate.py: a corrupt image mid-run, data.on_bad_image=skip, a wrong-size distorted
    image, a duplicated label line."""
    png = {f"d{k}.png": encoded(Image.fromarray(rgb(32, 32, seed=k)), "PNG") for k in range(4)}
    png["d2.png"] = png["d2.png"][:200]  # truncated, third of four pairs
    root = demo_folder(tmp_path / "data", png)
    common = ["backbone=efficientnet_lite0", "backbone.pretrained=false", "distance=[l2]", "baselines=[]", "data=demo",
              f"data.root={root}", "data.strict=false", f"run.out={tmp_path / 'runs'}", "run.accelerator=cpu",
              "run.batch_size=2"]
    bad = root / "dis" / "d2.png"

    code, err = run_evaluate(capsys, *common, "run.num_workers=1", "run.name=stop")  # raised in the main process
    last = error_line(err)
    assert code == 1 and "Traceback" not in err and "\n" not in last and "\nevaluate.py: error: " in err
    assert last.startswith(f"evaluate.py: error: truncated PNG: {bad} (") and "data.on_bad_image=skip" in last

    code, err = run_evaluate(capsys, *common, "run.num_workers=0", "run.name=skip", "data.on_bad_image=skip")
    assert code == 0, err
    with open(tmp_path / "runs" / "skip" / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["index"] for r in rows] == ["0", "1", "2", "3"] and list(rows[0])[-1] == "error"
    assert rows[2]["l2"] == "" and rows[2]["error"].startswith(f"truncated PNG: {bad} (")
    assert all(float(r["l2"]) > 0 and r["error"] == "" for k, r in enumerate(rows) if k != 2)
    summary = json.loads((tmp_path / "runs" / "skip" / "summary.json").read_text())["metrics"]["l2"]
    assert (summary["n_scored"], summary["n_failed"], summary["failed_indices"]) == (3, 1, [2])
    assert summary["failed_reasons"] == {"2": rows[2]["error"]}

    sizes = demo_folder(tmp_path / "sizes", {"d0.png": png["d0.png"], "d1.png": encoded(Image.fromarray(rgb(24, 32)), "PNG")})
    args = [*common[:5], f"data.root={sizes}", *common[6:], "run.num_workers=0"]
    code, err = run_evaluate(capsys, *args, "run.name=sizes")
    assert code == 1 and error_line(err).startswith(
        f"evaluate.py: error: {sizes / 'dis' / 'd1.png'}: reference (32, 32) and distorted (24, 32) images differ in size")
    code, err = run_evaluate(capsys, *args, "run.name=sizes_skip", "data.on_bad_image=skip")
    assert code == 0, err
    summary = json.loads((tmp_path / "runs" / "sizes_skip" / "summary.json").read_text())["metrics"]["l2"]
    assert summary["n_failed"] == 1 and summary["failed_reasons"]["1"].startswith(f"{sizes / 'dis' / 'd1.png'}: ")

    dup = demo_folder(tmp_path / "dup", {"d0.png": png["d0.png"]}, rows=[("ref/r0.png", "dis/d0.png")] * 2)
    code, err = run_evaluate(capsys, *common[:5], f"data.root={dup}", *common[6:], "run.name=dup")
    meta = dup / "meta.csv"
    assert code == 1 and error_line(err) == (
        f"evaluate.py: error: demo: {meta}:3: pair (ref/r0.png, dis/d0.png) listed twice: 'ref/r0.png,dis/d0.png,1,t,1' "
        f"and 'ref/r0.png,dis/d0.png,2,t,2' (first at {meta}:2); remove one of them")


def test_long_error_lists_name_the_first_and_count_the_rest_in_good_english():
    from zsiqa.errors import first_and_count

    assert first_and_count([]) == ""
    assert first_and_count(["a.png"]) == "a.png"
    assert first_and_count(["a.png", "b.png"]) == "a.png (and 1 other file)"
    assert first_and_count([3, 4, 5], "pair") == "3 (and 2 other pairs)"
