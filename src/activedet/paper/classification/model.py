"""A classifier with two adversarial heads (f1, f2) on a shared feature extractor, as MI-AOD's IUL."""
from __future__ import annotations

import torch
from torch import nn


class TwoHeadClassifier(nn.Module):
    """``features`` (images -> vectors) and two independently initialised linear heads f1, f2."""

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.features = features
        self.heads = nn.ModuleDict({name: nn.Linear(feature_dim, num_classes) for name in ("f1", "f2")})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(x)
        return self.heads["f1"](z), self.heads["f2"](z)


def small_cnn(in_channels: int) -> tuple[nn.Module, int]:
    """Three 3x3 convolutions for small images (the 8x8 digits): seconds per cycle on a CPU."""
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    net = nn.Sequential(*block(in_channels, 16), *block(16, 32), nn.MaxPool2d(2), *block(32, 64),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return net, 64


def resnet18_cifar(in_channels: int) -> tuple[nn.Module, int]:
    """torchvision's ResNet-18 in its usual CIFAR form (3x3 stem, stride 1, no max-pool), the paper's backbone."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net, 512


ARCHS = {"small_cnn": small_cnn, "resnet18": resnet18_cifar}


def build_classifier(arch: str, in_channels: int, num_classes: int) -> TwoHeadClassifier:
    features, dim = ARCHS[arch](in_channels)
    return TwoHeadClassifier(features, dim, num_classes)
