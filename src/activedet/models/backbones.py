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


class TinyBackboneFPN(nn.Module):
    """A small CPU backbone (strides 2/4/8/16) with torchvision's FPN on strides 4, 8, 16."""

    def __init__(self, channels=(16, 32, 64, 96), out_channels: int = 64):
        super().__init__()
        c0, c1, c2, c3 = channels
        self.stem = _conv_bn(3, c0, 2)
        self.stage1 = nn.Sequential(_conv_bn(c0, c1, 2), _conv_bn(c1, c1, 1))
        self.stage2 = nn.Sequential(_conv_bn(c1, c2, 2), _conv_bn(c2, c2, 1))
        self.stage3 = nn.Sequential(_conv_bn(c2, c3, 2), _conv_bn(c3, c3, 1))
        self.fpn = FeaturePyramidNetwork([c1, c2, c3], out_channels)
        self.out_channels = out_channels
        self.strides = (4, 8, 16)

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


def build_tiny(cfg: dict) -> nn.Module:
    return TinyBackboneFPN(tuple(cfg["channels"]), cfg["fpn_channels"])


def build_resnet50_fpn(cfg: dict) -> nn.Module:
    return ResNet50FPN(cfg["fpn_channels"], cfg.get("backbone_weights"))


BACKBONES = {"tiny": build_tiny, "resnet50_fpn": build_resnet50_fpn}
