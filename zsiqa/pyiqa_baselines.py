"""The field's full-reference metrics (pyiqa, the optional extra ``zsiqa[baselines]``) as zsiqa baselines.

Every metric that ``pyiqa.list_models(metric_mode="FR")`` lists is a baseline under pyiqa's own name (``fsim``,
``lpips-vgg``, ``dists``), except the three zsiqa has itself (``psnr``, ``ssim``, ``ms_ssim``: zsiqa's keep those
names and values; pyiqa's are ``pyiqa:psnr`` ...). pyiqa's code is not copied (its licence is non-commercial): it is
imported, and its metric modules score the same decoded tensors as the deep heads, distorted image first, RGB in
[0, 1], a group of distorted images at a time, on the run's device. Direction: pyiqa's ``lower_better``.

Weights come from pyiqa's cache (``$TORCH_HOME/hub/pyiqa``) and torchvision's (``$TORCH_HOME/hub/checkpoints``),
filled by ``zsiqa download --baselines NAME``. A file that is missing where its host cannot be reached (or with
``HF_HUB_OFFLINE=1``) is one :class:`WeightsUnavailableError` naming the metric, the file and that command, within
seconds and before anything is scored; never random weights.
"""
from __future__ import annotations

import importlib.util
import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from functools import lru_cache

import torch

from .backbones.weights import cache_when_unreachable, unreachable
from .errors import ConfigError, WeightsUnavailableError, first_line

PREFIX = "pyiqa:"
OWN = ("psnr", "ssim", "ms_ssim")  # zsiqa's own baselines keep these names; pyiqa's are pyiqa:<name>
EXTRA = 'pip install -e ".[baselines]" (or pip install pyiqa)'
# pyiqa 0.1.16's FR metrics: names recognised (to say which extra to install) when pyiqa is not installed.
KNOWN_FR = (
    "afine_all", "afine_all_scale", "afine_fr", "ahiq", "ckdn", "cw_ssim", "deepdc", "dists", "dmm", "fgresq_pair",
    "fsim", "gmsd", "lpips", "lpips+", "lpips-vgg", "lpips-vgg+", "mad", "ms_ssim", "msswd", "nlpd", "pieapp", "psnr",
    "psnry", "ssim", "ssimc", "stlpips", "stlpips-vgg", "topiq_fr", "topiq_fr-pipal", "vif", "vsi", "wadiqam_fr",
)


def installed() -> bool:
    return importlib.util.find_spec("pyiqa") is not None


@lru_cache(maxsize=1)
def fr_names() -> tuple[str, ...]:
    """pyiqa's FR metric names (the installed library's list; the known list without it)."""
    if not installed():
        return KNOWN_FR
    import pyiqa

    return tuple(pyiqa.list_models(metric_mode="FR"))


def version() -> str:
    from importlib.metadata import version as installed_version

    return installed_version("pyiqa")


def pyiqa_name(name: str) -> str | None:
    """pyiqa's metric name behind baseline ``name`` (``fsim`` -> ``fsim``, ``pyiqa:psnr`` -> ``psnr``), or None when
    ``name`` is not one of pyiqa's FR metrics (zsiqa's ``psnr``, a typo)."""
    if name.startswith(PREFIX):
        return name[len(PREFIX):] if name[len(PREFIX):] in fr_names() else None
    return name if name not in OWN and name in fr_names() else None


def column_name(metric: str) -> str:
    """The baseline (and column) name of pyiqa metric ``metric``: its own, or ``pyiqa:<name>`` beside zsiqa's."""
    return PREFIX + metric if metric in OWN else metric


def available() -> list[str]:
    """Every pyiqa baseline name, as ``baselines=[...]`` takes them."""
    return [column_name(m) for m in fr_names()]


def require(name: str) -> None:
    """Raise the one-line error that says which extra to install, when baseline ``name`` needs pyiqa and it is not
    installed."""
    if not installed():
        raise ConfigError(f"baseline {name!r} is pyiqa's and pyiqa is not installed; install the extra: {EXTRA}")


def build(name: str) -> torch.nn.Module:
    """pyiqa's metric module for baseline ``name`` on the CPU, in eval mode, frozen (the run moves it to its device).
    Missing weight files are downloaded into the caches when their host answers; otherwise one
    :class:`WeightsUnavailableError` names the metric, the file and ``zsiqa download --baselines``."""
    require(name)
    metric = pyiqa_name(name)
    if metric is None:
        raise ConfigError(f"baseline {name!r} is not one of pyiqa's FR metrics: {', '.join(available())}")
    import pyiqa

    # the HF hub too, for metrics that download through it: offline at once when it cannot be reached
    with _guarded_downloads(name), cache_when_unreachable(None, None) as why:
        try:
            with redirect_stdout(io.StringIO()):  # pyiqa prints "Loading pretrained model ..." per weight file
                model = pyiqa.create_metric(metric, as_loss=False, device=torch.device("cpu"))
        except OSError as e:  # a download that does not go through torch hub (urllib, huggingface_hub) failed
            because = f"; {why}" if why else ""
            raise WeightsUnavailableError(
                f"baseline {name!r}: pyiqa could not load its weights ({type(e).__name__}: {first_line(e)}){because}. "
                f"Fix: run `zsiqa download --baselines {name}` once on a machine with network (it fills "
                f"$TORCH_HOME/hub and the Hugging Face cache), then copy those folders here") from e
    model.eval().requires_grad_(False)
    return model


def score(model: torch.nn.Module, ref: torch.Tensor, dis: torch.Tensor) -> torch.Tensor:
    """pyiqa metric ``model`` on distorted ``dis`` [N,3,H,W] against ``ref`` [N,3,H,W] (RGB in [0, 1]): [N] scores.
    pyiqa takes the distorted image first."""
    with torch.no_grad():
        out = model(dis, ref)
    return out.reshape(len(dis)).float()


@contextmanager
def _guarded_downloads(name: str) -> Iterator[None]:
    """Every file download of pyiqa and torchvision (``torch.hub.download_url_to_file``) is tried only when its host
    answers and downloading is allowed; otherwise one error naming the metric, the file and the prefetch command, in
    seconds (torch hub's own download has no timeout)."""
    import pyiqa.utils.download_util as pyiqa_download
    from huggingface_hub import constants

    original = torch.hub.download_url_to_file
    offline = constants.HF_HUB_OFFLINE  # as the user set it (cache_when_unreachable may set it inside the block)

    def fetch(url: str, dst: str, *args, **kwargs):
        why = "HF_HUB_OFFLINE=1 forbids downloading" if offline else unreachable(url)
        if why:
            raise WeightsUnavailableError(
                f"baseline {name!r}: its weights {dst} are missing and {why}. Fix: run `zsiqa download --baselines "
                f"{name}` once on a machine with network (it fetches {url}), then copy {os.path.dirname(dst)} here "
                f"(or point TORCH_HOME at a copy of $TORCH_HOME)")
        print(f"baseline {name}: downloading {url} -> {dst}", file=sys.stderr)
        return original(url, dst, *args, **kwargs)

    modules = (torch.hub, pyiqa_download)  # torchvision's checkpoints go through torch.hub's, pyiqa's through its copy
    saved = [m.download_url_to_file for m in modules]
    for m in modules:
        m.download_url_to_file = fetch
    try:
        yield
    finally:
        for m, f in zip(modules, saved):
            m.download_url_to_file = f
