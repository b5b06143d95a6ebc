"""The README and the docs site as a new user meets them: every Python and shell block runs as written (offline, on the
demo set), or carries a ``<!-- not run: REASON -->`` / ``<!-- run by TEST -->`` line saying why not; the site builds
with ``mkdocs build --strict``; the configuration page is what the schema generates."""
from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(?:^<!-- (?P<mark>[^\n]*?) -->\n)?^```(?P<lang>python|bash)\n(?P<code>.*?)^```$", re.S | re.M)
LINKED = ("evaluate.py", "train.py", "configs", "benchmarks")  # what shell blocks call by relative path


def blocks(page: Path) -> list[tuple[str | None, str, str]]:
    return [(m["mark"], m["lang"], m["code"]) for m in BLOCK.finditer(page.read_text())]


def test_every_block_is_run_or_says_why_not():
    for page in PAGES:
        for mark, _, _ in blocks(page):
            if mark is None:
                continue
            if mark.startswith("run by "):
                path, name = mark.removeprefix("run by ").split()[0].split("::")
                assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), f"{page}: {mark}"
            else:
                assert re.fullmatch(r"not run: \S.{10,}", mark), f"{page}: a skipped block needs its reason: {mark}"
    assert sum(len(blocks(p)) for p in PAGES) > 20


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    from zsiqa.data import build_demo

    return build_demo(tmp_path_factory.mktemp("docs") / "demo")


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if any(m is None for m, _, _ in blocks(p))],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_page_runs_as_written(page, tmp_path, demo_root):
    """A page's blocks run in order in one fresh folder (a later block may read what an earlier one wrote)."""
    for name in LINKED:
        (tmp_path / name).symlink_to(REPO / name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "ZSIQA_DEMO_ROOT": str(demo_root),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PYTHONWARNINGS": "ignore"}
    for mark, lang, code in blocks(page):
        if mark is not None:
            continue
        cmd = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{page.name}: block failed:\n{code}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_config_reference_is_generated_from_the_schema():
    module = runpy.run_path(str(REPO / "docs" / "gen_config_reference.py"))
    assert (REPO / "docs" / "reference" / "config.md").read_text() == module["render"](), (
        "docs/reference/config.md is stale: run python docs/gen_config_reference.py")


def test_docs_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, 'mkdocs is part of the dev extra: pip install -e ".[dev]"'
    proc = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "config" / "index.html").exists()


def test_readme_is_a_front_door():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for page in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (REPO / page).exists(), page
