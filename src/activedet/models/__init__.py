"""Detectors with named head branches: RetinaNet on a tiny or ResNet-50 FPN backbone, and SSD300-VGG16."""
from .backbones import BACKBONES
from .ll4al import add_loss_module
from .miaod import miaod_branches
from .retinanet import RetinaNet, build_detector
from .ssd import SSD, build_ssd

# Extra head branches each training method adds to the shared detector.
METHOD_BRANCHES = {"detector": lambda num_classes: None, "miaod": miaod_branches, "ll4al": lambda num_classes: None}
# Modules a training method attaches beside the head (LL4AL's loss prediction), built after the detector.
METHOD_MODULES = {"ll4al": add_loss_module}


def build_model(params: dict, num_classes: int, method: str = "detector") -> RetinaNet:
    """The detector every strategy trains (``detector`` section), with the method's extra branches."""
    # SSD300-VGG16 (the MI-AOD paper's second detector) has its own head and loss; everything else is RetinaNet.
    builder = build_ssd if params["detector"]["arch"] == "ssd300_vgg16" else build_detector
    model = builder(params["detector"], num_classes, METHOD_BRANCHES[method](num_classes))
    return METHOD_MODULES[method](model) if method in METHOD_MODULES else model


__all__ = ["BACKBONES", "METHOD_BRANCHES", "METHOD_MODULES", "SSD", "RetinaNet", "build_detector", "build_model",
           "build_ssd"]
