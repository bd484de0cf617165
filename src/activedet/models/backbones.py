"""Backbone + FPN builders (name -> builder dict in ``BACKBONES``).

Each builder returns a module mapping an image batch to a list of FPN feature
maps, finest first, all with ``out_channels`` channels.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


PRETRAINED_FORMAT = "activedet.pretrained_backbone/1"


class TinyBackboneFPN(nn.Module):
    """A small CPU backbone (strides 2/4/8/16) with torchvision's FPN on strides 4, 8, 16.

    ``frozen_stages`` as in mmdetection's ResNet: -1 trains everything, 0 freezes the stem, k
    freezes the stem and stages 1..k (weights and BatchNorm statistics: frozen modules stay in
    eval mode) — the papers' protocol for a pretrained backbone on few labeled images.
    """

    def __init__(self, channels=(16, 32, 64, 96), out_channels: int = 64, frozen_stages: int = -1):
        super().__init__()
        c0, c1, c2, c3 = channels
        self.stem = _conv_bn(3, c0, 2)
        self.stage1 = nn.Sequential(_conv_bn(c0, c1, 2), _conv_bn(c1, c1, 1))
        self.stage2 = nn.Sequential(_conv_bn(c1, c2, 2), _conv_bn(c2, c2, 1))
        self.stage3 = nn.Sequential(_conv_bn(c2, c3, 2), _conv_bn(c3, c3, 1))
        self.fpn = FeaturePyramidNetwork([c1, c2, c3], out_channels)
        self.out_channels = out_channels
        self.strides = (4, 8, 16)
        self.frozen = [self.stem, self.stage1, self.stage2, self.stage3][:frozen_stages + 1]
        for module in self.frozen:
            module.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen:  # frozen BatchNorm keeps its pretrained statistics
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stage1(self.stem(x))
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        return list(self.fpn(OrderedDict([("c2", c1), ("c3", c2), ("c4", c3)])).values())


class ResNet50FPN(nn.Module):
    """The paper's backbone: ResNet-50 + FPN on P3-P7 (P6 from C5), stem and layer1 frozen, BN frozen."""

    def __init__(self, out_channels: int = 256, weights_path: str | None = None):
        super().__init__()
        from torchvision.models import resnet50
        from torchvision.models.detection.backbone_utils import BackboneWithFPN
        from torchvision.ops.misc import FrozenBatchNorm2d

        body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        if weights_path:
            path = Path(weights_path)
            if not path.is_file():
                raise FileNotFoundError(f"detector.backbone_weights: {path} not found (nothing is downloaded; "
                                        "put an ImageNet ResNet-50 state dict there or set it to null)")
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("model", state) if isinstance(state, dict) else state
            missing, unexpected = body.load_state_dict(state, strict=False)
            if len(missing) > 10:
                raise ValueError(f"{path}: not a ResNet-50 state dict ({len(missing)} missing keys)")
        # As torchvision's _resnet_fpn_extractor (whose FPN width is fixed at 256): stem and layer1 frozen,
        # C3-C5 into the FPN, P6/P7 from C5 as in the released MI-AOD code.
        for name, p in body.named_parameters():
            if not name.startswith(("layer2", "layer3", "layer4")):
                p.requires_grad_(False)
        self.body = BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"}, [512, 1024, 2048],
                                    out_channels, extra_blocks=LastLevelP6P7(2048, out_channels))
        self.out_channels = out_channels
        self.strides = (8, 16, 32, 64, 128)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body((x - self.mean) / self.std).values())


def load_pretrained_backbone(backbone: nn.Module, path: str | Path) -> dict:
    """Load a file written by :func:`activedet.engine.pretrain.pretrain_backbone` into ``backbone``.

    The file is a dict ``{format, arch, channels, fpn_channels, backbone: state dict, ...}``
    (stem, stages and FPN). Returns its metadata (everything but the weights). Raises ``InputError``
    naming the file when it is missing, unreadable, of another format, or made for other channels.
    """
    from ..io import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: pretrained backbone not found (detector.backbone_weights; the pipeline's "
                         "pretrain_backbone rule or `python -m activedet pretrain` writes it)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(f"{path}: not a readable pretrained backbone ({str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != PRETRAINED_FORMAT:
        raise InputError(f"{path}: not a pretrained backbone of activedet (expected format {PRETRAINED_FORMAT})")
    try:
        backbone.load_state_dict(state["backbone"])
    except RuntimeError as e:
        raise InputError(f"{path}: made for detector.channels {state.get('channels')} / fpn_channels "
                         f"{state.get('fpn_channels')}, which this detector does not have "
                         f"({str(e).splitlines()[0]})") from None
    return {k: v for k, v in state.items() if k != "backbone"}


# detector.backbone_weights values that name no file: random initialisation, or the pipeline's own
# pretraining (whose output path the train steps receive with --backbone-weights).
NO_WEIGHTS = (None, "random")
PIPELINE_PRETRAINING = "glyph_scenes"


def build_tiny(cfg: dict) -> nn.Module:
    backbone = TinyBackboneFPN(tuple(cfg["channels"]), cfg["fpn_channels"], cfg.get("frozen_stages", -1))
    weights = cfg.get("backbone_weights")
    if weights == PIPELINE_PRETRAINING:
        from ..io import InputError

        raise InputError("detector.backbone_weights: glyph_scenes is the pipeline's pretrained backbone; give its "
                         "file with --backbone-weights (written by `python -m activedet pretrain`)")
    if weights not in NO_WEIGHTS:
        load_pretrained_backbone(backbone, weights)
    return backbone


def build_resnet50_fpn(cfg: dict) -> nn.Module:
    return ResNet50FPN(cfg["fpn_channels"], cfg.get("backbone_weights"))


BACKBONES = {"tiny": build_tiny, "resnet50_fpn": build_resnet50_fpn}
