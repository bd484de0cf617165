"""RetinaNet assembled from torchvision parts, with a head of named branches.

The head is a set of independent branches (tower of 3x3 convs + output conv,
weights shared across FPN levels). A plain detector has ``cls`` (f1) and
``reg`` (f_r); MI-AOD adds ``cls2`` (f2) and ``mil`` (f_mil) through
``extra_branches`` without touching anything else. Every branch output is
flattened to ``[B, anchors_total, K]`` in torchvision's anchor order, so losses
and scores run batched over images, levels and anchors.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import clip_boxes_to_image, nms

from .backbones import BACKBONES
from .losses import detection_loss

PRIOR_PROB = 0.01  # output bias -log((1 - p) / p) = -log(99), as in RetinaNet and MI-AOD


class Branch(nn.Module):
    """``num_convs`` x (3x3 conv + ReLU) then a 3x3 output conv with ``num_anchors * out_dim`` channels."""

    def __init__(self, in_channels: int, channels: int, num_convs: int, num_anchors: int, out_dim: int,
                 bias: float = 0.0, norm: str = "none"):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_convs):
            layers.append(nn.Conv2d(c, channels, 3, padding=1))
            if norm == "group":  # GroupNorm towers (as in RetinaNet v2 / FCOS) converge in fewer iterations
                layers.append(nn.GroupNorm(min(32, channels // 4) or 1, channels))
            layers.append(nn.ReLU(inplace=True))
            c = channels
        self.tower = nn.Sequential(*layers)
        self.out = nn.Conv2d(c, num_anchors * out_dim, 3, padding=1)
        self.out_dim = out_dim
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0.0)
        nn.init.constant_(self.out.bias, bias)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        outs = []
        for f in features:
            y = self.out(self.tower(f))
            B, _, H, W = y.shape
            # [B, A*K, H, W] -> [B, H*W*A, K]: location-major, anchor-minor, like AnchorGenerator.
            outs.append(y.view(B, -1, self.out_dim, H, W).permute(0, 3, 4, 1, 2).reshape(B, -1, self.out_dim))
        return torch.cat(outs, dim=1)


def classifier_bias() -> float:
    return -math.log((1 - PRIOR_PROB) / PRIOR_PROB)


class RetinaNet(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, anchor_sizes, aspect_ratios, head_convs: int = 4,
                 head_channels: int = 256, extra_branches: dict[str, tuple[int, float]] | None = None,
                 head_norm: str = "none"):
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        sizes = tuple(tuple(float(s) for s in level) for level in anchor_sizes)
        per_level = {len(level) for level in sizes}
        if len(per_level) != 1:
            raise ValueError("detector.anchor_sizes: every level needs the same number of sizes (the head is shared)")
        self.anchor_generator = AnchorGenerator(sizes, (tuple(float(r) for r in aspect_ratios),) * len(sizes))
        self.num_anchors = self.anchor_generator.num_anchors_per_location()[0]
        branch_specs = {"cls": (num_classes, classifier_bias()), "reg": (4, 0.0)}
        branch_specs.update(extra_branches or {})
        self.branches = nn.ModuleDict({
            name: Branch(backbone.out_channels, head_channels, head_convs, self.num_anchors, dim, bias, head_norm)
            for name, (dim, bias) in branch_specs.items()})
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self._anchor_cache: dict = {}
        self.postprocess_cfg = {"score_threshold": 0.05, "nms_threshold": 0.5, "detections_per_image": 100,
                                "candidates_per_image": 1000}

    def forward(self, images: torch.Tensor, branches: tuple[str, ...] | None = None,
                return_features: bool = False, grad_branches: tuple[str, ...] | None = None) -> dict:
        """Branch outputs ``[B, anchors, K]``; ``grad_branches``: only these need autograd.

        With ``grad_branches`` the backbone and the other branches run under ``no_grad``
        (same values, no graph): MI-AOD's max step trains f1/f2 alone.
        """
        names = branches if branches is not None else tuple(self.branches)
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad_branches is None):
            features = self.backbone(images)
            out = {name: self.branches[name](features) for name in names
                   if grad_branches is None or name not in grad_branches}
        out.update({name: self.branches[name](features) for name in names if name not in out})
        out = {name: out[name] for name in names}
        out["level_sizes"] = [f.shape[-2] * f.shape[-1] * self.num_anchors for f in features]
        if return_features:
            out["features"] = features
        return out

    def anchors(self, images: torch.Tensor) -> torch.Tensor:
        """Anchors [A, 4] (xyxy, input pixels) for a batch of fixed-size images; cached per size."""
        H, W = images.shape[-2:]
        key = (H, W, images.device, images.dtype)
        if key not in self._anchor_cache:
            was_training = self.training
            self.eval()  # a train-mode forward would update BatchNorm statistics
            with torch.no_grad():
                feats = self.backbone(images[:1])
            self.train(was_training)
            grids = [torch.empty(1, 1, *f.shape[-2:], device=images.device, dtype=images.dtype) for f in feats]
            # torchvision's AnchorGenerator needs an ImageList; the anchors are identical for every image.
            self._anchor_cache[key] = self.anchor_generator(ImageList(images[:1], [(H, W)]), grids)[0]
        return self._anchor_cache[key]

    def detection_loss(self, out: dict, classifiers: tuple[str, ...], anchors: torch.Tensor, targets: list[dict],
                       cfg: dict, t: dict | None = None) -> dict:
        """The RetinaNet loss of the named classifier branches (``losses.detection_loss``); SSD has its own."""
        return detection_loss([out[name] for name in classifiers], out["reg"], anchors, targets, cfg,
                              self.box_coder, t)

    @torch.no_grad()
    def postprocess(self, cls_logits: torch.Tensor, reg: torch.Tensor, anchors: torch.Tensor,
                    image_size: tuple[int, int]) -> list[dict]:
        """Detections per image: per-image top-k candidates over all levels, decode, NMS per image and class.

        ``cls_logits`` [B, A, C], ``reg`` [B, A, 4], ``anchors`` [A, 4] (xyxy, input pixels),
        ``image_size`` (H, W). Thresholds come from ``postprocess_cfg`` (the detector params): per image
        the ``candidates_per_image`` highest class scores above ``score_threshold``, NMS per (image,
        class) at ``nms_threshold``, the best ``detections_per_image`` kept; torchvision's RetinaNet
        postprocessing, batched.

        Returns per image ``boxes`` (xyxy, input pixels), ``scores``, ``labels`` and ``anchor_idx``
        (the anchor each detection came from, used by strategies that read per-anchor outputs), sorted
        by score, descending.
        """
        cfg = self.postprocess_cfg
        score_threshold, nms_threshold = cfg["score_threshold"], cfg["nms_threshold"]
        B, A, C = cls_logits.shape
        scores = cls_logits.sigmoid().flatten(1)
        k = min(cfg["candidates_per_image"], A * C)
        above = scores > score_threshold
        counts = above.sum(dim=1)
        if B == 0 or int(counts.max()) <= k:
            # No image has more candidates than the top-k keeps: the top-k is the thresholded set and
            # its sort only orders it, which NMS does again; skipping it saves a top-k over A x C per image.
            img_idx, flat = above.nonzero(as_tuple=True)
            s = scores[img_idx, flat]
        else:
            top_scores, top_idx = scores.topk(k, dim=1)
            keep = top_scores > score_threshold
            img_idx = torch.arange(B, device=scores.device)[:, None].expand(B, k)[keep]
            flat, s = top_idx[keep], top_scores[keep]
        anchor_idx, labels = flat // C, flat % C
        boxes = self.box_coder.decode_single(reg[img_idx, anchor_idx], anchors[anchor_idx])
        boxes = clip_boxes_to_image(boxes, image_size)
        # Candidates come grouped by image (img_idx ascending): one NMS call per image on boxes shifted per
        # class once for the batch. One call for the whole batch would compare every box with all the
        # other images' boxes too (NMS is quadratic); per image it is a slice and one call.
        shifted, s64 = offset_by_group(boxes, labels), s.double()
        per_image, kept, start = [], [], 0
        for n in torch.bincount(img_idx, minlength=B).tolist():
            keep_i = img_idx[:0]
            if n:  # nms sorts by score, descending (stable: ties keep the candidates' order)
                keep_i = nms(shifted[start:start + n], s64[start:start + n], nms_threshold)
                keep_i = keep_i[: cfg["detections_per_image"]] + start
                kept.append(keep_i)
            per_image.append(len(keep_i))
            start += n
        kept = torch.cat(kept) if kept else img_idx[:0]
        fields = {"boxes": boxes[kept], "scores": s[kept], "labels": labels[kept], "anchor_idx": anchor_idx[kept]}
        split = {name: v.split(per_image) for name, v in fields.items()}
        return [{name: split[name][i] for name in fields} for i in range(B)]


def offset_by_group(boxes: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Boxes [N, 4] (xyxy) shifted by ``group x (coordinate range + 1)``, float64: boxes of different
    groups never overlap, so one ``nms`` call over them is NMS within each group.

    The coordinate-offset path of torchvision's ``batched_nms``, which takes it on CPU only up to
    4,000 coordinates (1,000 boxes) and otherwise loops over the groups in Python (one ``nms`` call and
    one mask over all boxes per group): with image x class groups that loop was most of a scoring
    pass. In float64 the shift moves no coordinate by more than ~1e-9 px (float32 would round them to
    ~1e-4 px once the offsets reach a few hundred pixels, enough to move an IoU across the threshold).
    """
    b = boxes.double()
    if len(b) == 0:
        return b
    return b + (groups.double() * (b.max() - b.min() + 1))[:, None]


def class_aware_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float
                    ) -> torch.Tensor:
    """NMS within each group (e.g. class) in one ``nms`` call: indices of ``boxes`` [N, 4] kept, sorted by
    score, descending; the same as torchvision's ``batched_nms`` (see :func:`offset_by_group`)."""
    return nms(offset_by_group(boxes, groups), scores.double(), iou_threshold)


def build_detector(det_cfg: dict, num_classes: int, extra_branches: dict[str, tuple[int, float]] | None = None
                   ) -> RetinaNet:
    """RetinaNet from the ``detector`` section of the params."""
    if num_classes < 1:
        raise ValueError("a detector needs at least one class")
    backbone = BACKBONES[det_cfg["arch"]](det_cfg)
    n_levels = len(backbone.strides)
    if len(det_cfg["anchor_sizes"]) != n_levels:
        raise ValueError(f"detector.anchor_sizes has {len(det_cfg['anchor_sizes'])} levels but the "
                         f"{det_cfg['arch']} backbone has {n_levels} FPN levels")
    model = RetinaNet(backbone, num_classes, det_cfg["anchor_sizes"], det_cfg["aspect_ratios"],
                      det_cfg["head_convs"], det_cfg["head_channels"], extra_branches, det_cfg["head_norm"])
    model.postprocess_cfg = {k: det_cfg[k] for k in model.postprocess_cfg}
    return model
