"""Imports every backbone family module so that their ``@register_backbone`` entries exist."""
from . import open_clip_models, timm_models, vgg  # noqa: F401
