"""What evaluate.py and train.py share around Hydra: the command-line check, no library tips, the process's malloc
settings, one job's error boundary."""
from __future__ import annotations

import ctypes
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Callable

import hydra
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from .config import CONFIG_DIR, check_command_line, load, register_configs
from .errors import ZsiqaError, out_of_space, run_entry_point
from .reporting.sweep import record_cell

# Lightning's promotional tips and its per-Trainer accelerator banners (train.py builds two Trainers: two banners);
# zsiqa.engine.build prints one device line instead.
_DROPPED = ("💡 Tip", "GPU available:", "TPU available:", "HPU available:", "LOCAL_RANK:")


class _NoTips(logging.Filter):
    """Drops Lightning's promotional tips and accelerator banners (``_DROPPED``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_DROPPED)


_NO_TIPS = _NoTips()

def quiet_libraries() -> None:
    """Drop Lightning's promotional tips and accelerator banners (the pytree deprecation warning is silenced where
    the engine imports Lightning, ``zsiqa/engine/__init__.py``)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NO_TIPS)


# glibc hands freed blocks above its mmap threshold (32 MB at most, moved at run time) and any free top of the heap
# beyond its trim threshold back to the kernel at once. A scoring process frees and allocates the same few hundred MB
# (a chunk's taps, the backbone's activations) call after call, so every call faulted them in again page by page.
# Kept for reuse instead: about 40 % fewer page faults, a little less time and a little more peak RSS (measured in
# docs/benchmarks.md, "How scoring is organised").
MALLOC_MMAP_THRESHOLD = 2**30  # blocks up to 1 GiB come from the reusable heap
MALLOC_TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes: the heap is in effect never trimmed
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
_USER_MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse (the engine's own processes: evaluate.py and train.py jobs). Returns
    whether it was set: not on other C libraries, nor when the user chose malloc settings in the environment."""
    if sys.platform != "linux" or any(name in os.environ for name in _USER_MALLOC_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): its allocator has no such thresholds
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
                and libc.mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD))


def entry_main(entry: str, argv: list[str], next_steps: str = "") -> int:
    """``python <entry>.py ARGV`` (entry: "evaluate" or "train"): the Hydra app of ``configs/<entry>.yaml`` running
    ``zsiqa.engine``'s task; returns the exit code. ``next_steps`` is printed after a run without arguments."""

    @hydra.main(config_path=str(CONFIG_DIR), config_name=entry, version_base="1.3")
    def hydra_main(cfg: DictConfig) -> None:
        run_task(entry, cfg)

    code = run_app(entry, argv, hydra_main)
    if code == 0 and not argv:
        print(next_steps)
    return code


def run_app(entry: str, argv: list[str], hydra_main: Callable[[], None]) -> int:
    """evaluate.py / train.py: check the command line (every cell of a sweep), then let Hydra run it. Returns the
    exit code: 2 for a config error, 1 for another expected error (one line each), 0 otherwise."""
    prog = f"{entry}.py"
    quiet_libraries()
    code = run_entry_point(lambda: check_command_line(entry, argv), prog)
    if code:
        return code
    register_configs()
    sys.argv = [sys.argv[0], *argv]  # what hydra.main reads
    try:
        hydra_main()
    except SystemExit as e:  # --help, or a job's expected error (run_task printed it)
        return e.code if isinstance(e.code, int) else 1
    return 0


def run_task(entry: str, cfg: DictConfig) -> None:
    """Run one job of a Hydra app: ``zsiqa.engine.evaluation.evaluate`` or ``training.train`` on the loaded config
    of ``entry``. An expected error prints one line and exits with its code. In a sweep, the job's folder gets a
    link ``run`` to its run folder (what ``zsiqa gather`` follows)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    quiet_libraries()  # again: a sweep job may run in a fresh process
    keep_freed_memory()
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        code = run_entry_point(lambda: _run(entry, cfg), f"{entry}.py")
        if code:
            sys.exit(code)
        return
    # A sweep's cell: its outcome is recorded in its job folder (then in grid.md) and a failure ends only this cell.
    job_dir, overrides, prog = Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task), f"{entry}.py"
    record = (lambda *a: record_cell(job_dir, overrides, *a)) if rank_zero_only.rank == 0 else (lambda *a: None)
    record("running")
    try:
        _run(entry, cfg)
    except Exception as e:  # recorded, then the sweep goes on: one bad cell must not end a 100-cell study
        expected = e if isinstance(e, ZsiqaError) else out_of_space(e) if isinstance(e, OSError) else None
        if expected is not None:
            print(f"{prog}: error: {expected}", file=sys.stderr)
            record("failed", str(expected))
        else:  # a bug: its traceback printed and kept beside the record
            traceback.print_exc()
            (job_dir / "traceback.txt").write_text(traceback.format_exc())
            first = str(e).splitlines()[0] if str(e) else ""
            record("failed", f"{type(e).__name__}: {first} (traceback: {job_dir / 'traceback.txt'})")
    else:
        record("done")


def _run(entry: str, cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if entry == "evaluate":
        from .engine.evaluation import evaluate as task
    else:
        from .engine.training import train as task
    summary = task(load(entry, cfg))
    hydra_cfg = HydraConfig.get()
    if summary is not None and hydra_cfg.mode == RunMode.MULTIRUN:
        link = Path(hydra_cfg.runtime.output_dir) / "run"
        link.unlink(missing_ok=True)
        link.symlink_to(Path(summary["run_dir"]).resolve(), target_is_directory=True)
