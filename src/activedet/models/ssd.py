"""SSD300-VGG16 from torchvision parts, with the head as named branches (MI-AOD adds ``cls2`` and ``mil``).

Backbone: torchvision's VGG-16 layers (``vgg.make_layers``) inside its SSD feature
extractor (``SSDFeatureExtractorVGG``: conv4_3 with L2 norm, dilated fc6/fc7 and the
extra layers; six maps of 512, 1024, 512, 256, 256, 256 channels). Default boxes:
torchvision's ``DefaultBoxGenerator`` (8732 for a 300x300 input). Box deltas are
encoded with weights (10, 10, 5, 5) (variances 0.1 / 0.2), as torchvision's and
MMDetection's SSD.

Head, as the MI-AOD authors' SSD head: every branch is one 3x3 conv per level (the
levels differ in width, so nothing is shared across levels). The instance
classifiers ``cls`` (f1) and ``cls2`` (f2) score C + 1 classes with a softmax,
background first (torchvision's convention). ``mil`` (f_mil) scores the C object
classes: MI-AOD's image score multiplies its class softmax with a per-level anchor
softmax of the objectness, and the released SSD head's C + 1 column (background)
had no image label to be compared with.

Outputs: the classifiers are returned as per-class logits of the foreground softmax
probabilities, ``logit(softmax(x)[c])`` for c = 1..C (``foreground_logits``), so
``sigmoid(out["cls"])`` is the class probability for every consumer written for the
sigmoid RetinaNet (postprocessing, entropy, MI-AOD's discrepancy and pseudo labels).
The raw C + 1 logits the loss needs are in ``out["softmax_logits"]``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSDFeatureExtractorVGG
from torchvision.models.vgg import cfgs, make_layers

from ..io import InputError
from .losses import build_targets
from .retinanet import RetinaNet

SSD_CHANNELS = (512, 1024, 512, 256, 256, 256)
SOFTMAX_BRANCHES = ("cls", "cls2")  # instance classifiers: C + 1 outputs, background at index 0


def foreground_logits(x: torch.Tensor) -> torch.Tensor:
    """``logit(softmax(x)[..., c])`` for c = 1..C of logits ``x [..., C+1]`` (background column 0).

    The logit of a softmax probability is ``x_c - logsumexp_{j != c} x_j``. For the
    largest logit that is computed exactly with the others' log-sum-exp; every other
    class has ``p <= 1/2``, where ``log1p(-p)`` is well conditioned. (``torch.logit`` of
    the softmax would round a confident class to p = 1 and return inf.)
    """
    lse = torch.logsumexp(x, dim=-1, keepdim=True)
    log_p = x - lse
    is_top = torch.zeros_like(x, dtype=torch.bool).scatter_(-1, x.argmax(dim=-1, keepdim=True), True)
    log_rest_top = torch.logsumexp(x.masked_fill(is_top, float("-inf")), dim=-1, keepdim=True) - lse
    # The top class's log_p may be 0: keep it out of log1p(-exp(.)) so no inf*0 reaches the gradient.
    safe = torch.where(is_top, torch.full_like(log_p, -1.0), log_p)
    log_rest = torch.where(is_top, log_rest_top, torch.log1p(-safe.exp()))
    return (log_p - log_rest)[..., 1:]


class LevelConvs(nn.Module):
    """One 3x3 conv per level with ``anchors[l] * out_dim`` outputs, flattened to ``[B, anchors_total, out_dim]``."""

    def __init__(self, in_channels, anchors_per_location, out_dim: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, a * out_dim, 3, padding=1)
                                   for c, a in zip(in_channels, anchors_per_location))
        self.out_dim = out_dim
        for conv in self.convs:  # SSD's initialisation (torchvision and MMDetection): Xavier uniform, zero bias
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        outs = []
        for f, conv in zip(features, self.convs):
            y = conv(f)
            B, _, H, W = y.shape
            # [B, A*K, H, W] -> [B, H*W*A, K]: location-major, anchor-minor, like DefaultBoxGenerator.
            outs.append(y.view(B, -1, self.out_dim, H, W).permute(0, 3, 4, 1, 2).reshape(B, -1, self.out_dim))
        return torch.cat(outs, dim=1)


def vgg16_layers(weights_path: str | None) -> nn.Sequential:
    """VGG-16's convolutional layers, from a local state dict (torchvision ``vgg16`` or its ``features``)."""
    layers = make_layers(cfgs["D"], batch_norm=False)
    if not weights_path:
        for m in layers.modules():  # torchvision VGG's own initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        return layers
    path = Path(weights_path)
    if not path.is_file():
        raise InputError(f"detector.backbone_weights: {path} not found (nothing is downloaded; put a VGG-16 "
                         "state dict there, e.g. torchvision.models.vgg16(weights='IMAGENET1K_V1').state_dict(), "
                         "or set it to null)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated or holding code: all refused the same way
        raise InputError(f"{path}: not a readable state dict ({str(e).splitlines()[0]})") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a VGG-16 state dict, got {type(state).__name__}")
    features = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
    missing, _ = layers.load_state_dict(features, strict=False)
    if missing:
        raise InputError(f"{path}: not a VGG-16 state dict (missing {', '.join(missing[:4])}"
                         f"{', ...' if len(missing) > 4 else ''})")
    return layers


class VGG16SSDBackbone(nn.Module):
    """Images in [0, 1] -> the six SSD300 feature maps (ImageNet normalisation, as torchvision's VGG weights)."""

    def __init__(self, weights_path: str | None = None):
        super().__init__()
        self.body = SSDFeatureExtractorVGG(vgg16_layers(weights_path), highres=False)
        self.out_channels = list(SSD_CHANNELS)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body((x - self.mean) / self.std).values())


class SSD(nn.Module):
    """SSD300 with named head branches; the same interface as :class:`RetinaNet` for training, scoring, evaluation."""

    # Shared with RetinaNet: anchors cached per input size (DefaultBoxGenerator takes the same arguments as
    # AnchorGenerator), and one batched top-k + NMS over sigmoid(cls) = the foreground softmax probabilities.
    anchors = RetinaNet.anchors
    postprocess = RetinaNet.postprocess

    def __init__(self, backbone: VGG16SSDBackbone, num_classes: int, cfg: dict,
                 extra_branches: dict[str, tuple[int, float]] | None = None):
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.anchor_generator = DefaultBoxGenerator([list(r) for r in cfg["aspect_ratios"]], scales=cfg["scales"],
                                                    steps=cfg["steps"])
        self.anchors_per_location = self.anchor_generator.num_anchors_per_location()
        if len(self.anchors_per_location) != len(SSD_CHANNELS):
            raise ValueError(f"detector.ssd.aspect_ratios: SSD300 has {len(SSD_CHANNELS)} levels, "
                             f"got {len(self.anchors_per_location)}")
        self.neg_pos_ratio = cfg["neg_pos_ratio"]
        dims = {"cls": num_classes + 1, "reg": 4}
        for name, (dim, _bias) in (extra_branches or {}).items():  # SSD heads start from zero biases
            dims[name] = num_classes + 1 if name in SOFTMAX_BRANCHES else dim
        self.branches = nn.ModuleDict({name: LevelConvs(SSD_CHANNELS, self.anchors_per_location, dim)
                                       for name, dim in dims.items()})
        self.box_coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self._anchor_cache: dict = {}
        self.postprocess_cfg = {"score_threshold": 0.02, "nms_threshold": 0.45, "detections_per_image": 200,
                                "candidates_per_image": 1000}

    def forward(self, images: torch.Tensor, branches: tuple[str, ...] | None = None,
                return_features: bool = False, grad_branches: tuple[str, ...] | None = None) -> dict:
        """Branch outputs ``[B, anchors, K]`` (classifiers as foreground logits, see the module docstring).

        ``grad_branches``: only these need autograd (MI-AOD's max step trains f1/f2 alone).
        """
        names = branches if branches is not None else tuple(self.branches)
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad_branches is None):
            features = self.backbone(images)
            raw = {name: self.branches[name](features) for name in names
                   if grad_branches is None or name not in grad_branches}
        raw.update({name: self.branches[name](features) for name in names if name not in raw})
        out = {name: foreground_logits(raw[name]) if name in SOFTMAX_BRANCHES else raw[name] for name in names}
        out["softmax_logits"] = {name: raw[name] for name in names if name in SOFTMAX_BRANCHES}
        out["level_sizes"] = [f.shape[-2] * f.shape[-1] * a for f, a in zip(features, self.anchors_per_location)]
        if return_features:
            out["features"] = features
        return out

    def detection_loss(self, out: dict, classifiers: tuple[str, ...], anchors: torch.Tensor, targets: list[dict],
                       cfg: dict, t: dict | None = None) -> dict:
        """SSD's MultiBox loss; with several classifiers (MI-AOD's f1, f2) their losses are averaged.

        See :func:`multibox_loss`. Returns the keys of ``losses.detection_loss``.
        """
        if t is None:
            t = build_targets(anchors, targets, self.num_classes, cfg["fg_iou_threshold"], cfg["bg_iou_threshold"])
        return multibox_loss([out["softmax_logits"][name] for name in classifiers], out["reg"], anchors, t,
                             self.box_coder, self.neg_pos_ratio)


def multibox_loss(logits: list[torch.Tensor], reg: torch.Tensor, anchors: torch.Tensor, t: dict,
                  box_coder: BoxCoder, neg_pos_ratio: float) -> dict:
    """Softmax cross-entropy with hard negative mining plus smooth-L1 box loss, batched over images.

    Per image the positives and the ``neg_pos_ratio`` x #positives negatives with the
    largest cross-entropy count (an image without boxes adds no negatives, as in SSD);
    anchors between the IoU thresholds (``t["valid"]`` false) are never negatives.
    Everything is divided by the batch's number of positives (at least 1). The same
    loss as torchvision's ``SSD.compute_loss`` (tested against it), with one sort for
    the whole batch instead of a loop over images, several classifiers, and per-image values.
    """
    fg = t["foreground"]  # [B, A]
    B, A = fg.shape
    labels = torch.where(fg, t["cls_target"].argmax(dim=-1) + 1, 0)  # background 0, classes 1..C
    n_fg = fg.sum(dim=1)
    candidates = t["valid"] & ~fg
    n_neg = torch.minimum(neg_pos_ratio * n_fg, candidates.sum(dim=1))
    cls_img = torch.zeros(B, device=reg.device, dtype=reg.dtype)
    for x in logits:  # one or two classifiers
        ce = F.cross_entropy(x.reshape(-1, x.shape[-1]), labels.reshape(-1), reduction="none").view(B, A)
        neg_ce = ce.detach().masked_fill(~candidates, float("-inf"))
        order = torch.sort(neg_ce, dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(A, device=order.device).expand(B, A))
        hard_neg = candidates & (rank < n_neg[:, None])
        cls_img = cls_img + (ce * (fg | hard_neg)).sum(dim=1)
    cls_img = cls_img / len(logits)
    reg_img = torch.zeros(B, device=reg.device, dtype=reg.dtype)
    if fg.any():
        img = torch.nonzero(fg)[:, 0]
        target = box_coder.encode_single(t["matched_boxes"][fg], anchors.expand(B, -1, -1)[fg])
        l1 = F.smooth_l1_loss(reg[fg], target, reduction="none", beta=1.0).sum(dim=-1)
        reg_img = reg_img.index_add(0, img, l1)
    norm = n_fg.sum().clamp(min=1).to(reg.dtype)
    loss_cls, loss_reg = cls_img.sum() / norm, reg_img.sum() / norm
    return {"loss": loss_cls + loss_reg, "loss_cls": loss_cls, "loss_reg": loss_reg,
            "per_image": (cls_img + reg_img) / n_fg.clamp(min=1).to(reg.dtype), "targets": t}


def build_ssd(det_cfg: dict, num_classes: int, extra_branches: dict[str, tuple[int, float]] | None = None) -> SSD:
    """SSD300-VGG16 from the ``detector`` section (``detector.ssd``: default boxes, hard negative ratio)."""
    if num_classes < 1:
        raise ValueError("a detector needs at least one class")
    model = SSD(VGG16SSDBackbone(det_cfg.get("backbone_weights")), num_classes, det_cfg["ssd"], extra_branches)
    model.postprocess_cfg = {k: det_cfg[k] for k in model.postprocess_cfg}
    return model
