"""Anchor matching and the RetinaNet loss, batched over images, levels and anchors."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_iou, sigmoid_focal_loss

BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2


def pad(tensors: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad per-image tensors [n_i, ...] to [B, G, ...] (G >= 1) with a validity mask [B, G]."""
    G = max([len(t) for t in tensors] + [1])
    out = tensors[0].new_zeros((len(tensors), G) + tuple(tensors[0].shape[1:])).to(device)
    valid = torch.zeros(len(tensors), G, dtype=torch.bool, device=device)
    for i, t in enumerate(tensors):
        out[i, : len(t)] = t
        valid[i, : len(t)] = True
    return out, valid


def match_anchors(anchors: torch.Tensor, gt_boxes: list[torch.Tensor], fg_iou: float, bg_iou: float,
                  allow_low_quality_matches: bool = True) -> torch.Tensor:
    """Matched ground-truth index per image and anchor: [B, A], -1 background, -2 ignored.

    Same rule as torchvision's ``Matcher`` (which works on one image at a time),
    applied to the whole batch at once: IoU >= fg_iou positive, < bg_iou
    negative, in between ignored, plus each ground truth's best anchors (ties
    included). Tested equal to ``Matcher`` image by image.
    """
    boxes, valid = pad(gt_boxes, anchors.device)
    B, G, _ = boxes.shape
    iou = box_iou(boxes.reshape(-1, 4), anchors).view(B, G, -1)  # [B, G, A]
    iou = iou.masked_fill(~valid[:, :, None], -1.0)
    matched_vals, all_matches = iou.max(dim=1)  # [B, A]
    matches = all_matches.clone()
    matches[matched_vals < bg_iou] = BELOW_LOW_THRESHOLD
    matches[(matched_vals >= bg_iou) & (matched_vals < fg_iou)] = BETWEEN_THRESHOLDS
    if allow_low_quality_matches:
        best_per_gt = iou.max(dim=2, keepdim=True).values  # [B, G, 1]
        is_best = (iou == best_per_gt) & valid[:, :, None]
        low_quality = is_best.any(dim=1)  # [B, A]
        matches = torch.where(low_quality, all_matches, matches)
    return matches


def build_targets(anchors: torch.Tensor, targets: list[dict], num_classes: int, fg_iou: float, bg_iou: float
                  ) -> dict:
    """Classification targets [B, A, C], anchor validity [B, A], and matched boxes [B, A, 4]."""
    gt_boxes = [t["boxes"] for t in targets]
    gt_labels = [t["labels"] for t in targets]
    matches = match_anchors(anchors, gt_boxes, fg_iou, bg_iou)
    boxes, _ = pad(gt_boxes, anchors.device)
    labels, _ = pad(gt_labels, anchors.device)  # [B, G]
    fg = matches >= 0
    idx = matches.clamp(min=0)
    matched_boxes = torch.gather(boxes, 1, idx[..., None].expand(-1, -1, 4))  # [B, A, 4]
    matched_labels = torch.gather(labels, 1, idx)  # [B, A]
    cls_target = torch.zeros(*matches.shape, num_classes, device=anchors.device)
    cls_target[fg] = F.one_hot(matched_labels[fg], num_classes).float()
    return {"matches": matches, "foreground": fg, "valid": matches != BETWEEN_THRESHOLDS,
            "cls_target": cls_target, "matched_boxes": matched_boxes}


def focal_loss_per_image(logits: torch.Tensor, t: dict, alpha: float, gamma: float) -> torch.Tensor:
    """Sum of the sigmoid focal loss over each image's non-ignored anchors and classes: [B]."""
    loss = sigmoid_focal_loss(logits, t["cls_target"], alpha=alpha, gamma=gamma, reduction="none")
    return (loss.sum(-1) * t["valid"]).sum(-1)


def regression_loss_per_image(reg: torch.Tensor, anchors: torch.Tensor, t: dict, box_coder: BoxCoder
                              ) -> torch.Tensor:
    """L1 loss of the box deltas over each image's positive anchors: [B]."""
    fg = t["foreground"]
    B = fg.shape[0]
    out = torch.zeros(B, device=reg.device, dtype=reg.dtype)
    if fg.any():
        img = torch.nonzero(fg)[:, 0]
        target = box_coder.encode_single(t["matched_boxes"][fg], anchors.expand(B, -1, -1)[fg])
        l1 = F.l1_loss(reg[fg], target, reduction="none").sum(-1)
        out = out.index_add(0, img, l1)
    return out


def detection_loss(cls_logits: list[torch.Tensor], reg: torch.Tensor, anchors: torch.Tensor, targets: list[dict],
                   cfg: dict, box_coder: BoxCoder, t: dict | None = None) -> dict:
    """RetinaNet loss; with several classifiers (MI-AOD's f1, f2) their focal losses are averaged.

    Normalised by the number of positive anchors in the batch (at least 1).
    ``per_image`` holds each image's own loss normalised by its own positives
    (used by loss prediction, LL4AL).
    """
    num_classes = cls_logits[0].shape[-1]
    if t is None:
        t = build_targets(anchors, targets, num_classes, cfg["fg_iou_threshold"], cfg["bg_iou_threshold"])
    n_fg = t["foreground"].sum(-1).float()  # [B]
    cls_img = sum(focal_loss_per_image(c, t, cfg["focal_alpha"], cfg["focal_gamma"]) for c in cls_logits)
    cls_img = cls_img / len(cls_logits)
    reg_img = regression_loss_per_image(reg, anchors, t, box_coder)
    norm = n_fg.sum().clamp(min=1.0)
    loss_cls, loss_reg = cls_img.sum() / norm, reg_img.sum() / norm
    return {"loss": loss_cls + loss_reg, "loss_cls": loss_cls, "loss_reg": loss_reg,
            "per_image": (cls_img + reg_img) / n_fg.clamp(min=1.0), "targets": t}
