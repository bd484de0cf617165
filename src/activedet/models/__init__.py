"""Detectors: a RetinaNet with named head branches on a tiny or ResNet-50 FPN backbone."""
from .backbones import BACKBONES
from .retinanet import RetinaNet, build_detector


def build_model(params: dict, num_classes: int) -> RetinaNet:
    """The detector every strategy trains (``detector`` section of the params)."""
    return build_detector(params["detector"], num_classes)


__all__ = ["BACKBONES", "RetinaNet", "build_detector", "build_model"]
