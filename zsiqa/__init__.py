"""zsiqa: zero-shot full-reference image quality assessment with frozen foundation-model features."""
from .backbones import create_backbone, list_backbones
from .choices import Preset
from .distances import list_distances
from .factory import create_metric
from .metric import Features, FRMetric

__version__ = "0.1.0"
__all__ = [
    "FRMetric", "Features", "Preset", "create_backbone", "create_metric", "list_backbones", "list_distances",
]
