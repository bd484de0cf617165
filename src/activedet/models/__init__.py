"""Detectors: a RetinaNet with named head branches on a tiny or ResNet-50 FPN backbone."""
from .backbones import BACKBONES
from .miaod import miaod_branches
from .retinanet import RetinaNet, build_detector

# Extra head branches each training method adds to the shared detector.
METHOD_BRANCHES = {"detector": lambda num_classes: None, "miaod": miaod_branches}


def build_model(params: dict, num_classes: int, method: str = "detector") -> RetinaNet:
    """The detector every strategy trains (``detector`` section), with the method's extra branches."""
    return build_detector(params["detector"], num_classes, METHOD_BRANCHES[method](num_classes))


__all__ = ["BACKBONES", "METHOD_BRANCHES", "RetinaNet", "build_detector", "build_model"]
