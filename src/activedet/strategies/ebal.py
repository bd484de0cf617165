"""EBAL (Wu et al., CVPR 2022): entropy-based NMS within an image, diverse prototypes across images.

1. Instance uncertainty: the binary entropy of each detection's confidence.
2. ENMS: per image, repeatedly keep the most uncertain detection and suppress the detections
   of its class whose features have cosine similarity above ``enms_threshold`` with it; the
   image's uncertainty is the sum of the kept entropies.
3. DivProto: per image and class, the entropy-weighted mean feature of the kept detections
   (a prototype). Walking the pool by uncertainty, an image is rejected when every class
   prototype of it is similar (cosine >= ``intra_threshold``) to one of an image already chosen
   this cycle (intra-class), or, while some minority class has quota left, when none of those
   classes is detected in it with confidence above ``inter_threshold`` (inter-class). The
   minority classes are the ``minority_fraction`` of the classes with the fewest labeled boxes;
   they share ``minority_budget`` of the budget as equal quotas. What the walk leaves of the
   budget is filled by uncertainty.

Features are the classification tower's output at each detection's anchor location.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .base import Strategy, frame

if TYPE_CHECKING:
    import torch


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """``-p log p - (1-p) log(1-p)`` (nats); ``torch.special.entr`` gives 0 at p = 0 and 1."""
    import torch

    return torch.special.entr(p) + torch.special.entr(1 - p)


def entropy_nms(entropy: torch.Tensor, labels: torch.Tensor, features: torch.Tensor, image_idx: torch.Tensor,
                n_images: int, threshold: float) -> torch.Tensor:
    """ENMS for a batch of images at once: the kept detections, a bool mask [N].

    Per image the detections are sorted by entropy (descending, stable); step k keeps the
    k-th detection unless an earlier kept one suppressed it, and suppresses the later ones
    of its class with feature cosine similarity above ``threshold``. The loop runs over the
    rank k (at most the detections per image), each step over all images of the batch.
    """
    import torch
    import torch.nn.functional as F

    N = entropy.shape[0]
    keep = torch.zeros(N, dtype=torch.bool, device=entropy.device)
    if N == 0:
        return keep
    order = torch.sort(-entropy, stable=True).indices
    order = order[torch.sort(image_idx[order], stable=True).indices]  # by image, then by entropy
    img = image_idx[order]
    counts = torch.bincount(img, minlength=n_images)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(N, device=entropy.device) - starts[img]
    D = int(counts.max())
    slot = torch.full((n_images, D), -1, dtype=torch.long, device=entropy.device)
    slot[img, rank] = order
    valid = slot >= 0
    f = F.normalize(features.float(), dim=1)[slot.clamp(min=0)]  # [B, D, C]
    lab = torch.where(valid, labels[slot.clamp(min=0)], -1)
    suppresses = (f @ f.transpose(1, 2) > threshold) & (lab[:, :, None] == lab[:, None, :]) & valid[:, None, :]
    removed = ~valid
    kept = torch.zeros_like(valid)
    for k in range(D):
        now = ~removed[:, k]
        kept[:, k] = now
        removed |= now[:, None] & suppresses[:, k]
    keep[slot[kept]] = True
    return keep


def class_prototypes(features: torch.Tensor, entropy: torch.Tensor, labels: torch.Tensor, image_idx: torch.Tensor,
                     n_images: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit prototypes [B, C, F] (entropy-weighted mean feature per image and class) and which exist [B, C].

    A class whose detections all have zero entropy gets their plain mean.
    """
    import torch
    import torch.nn.functional as F

    key = image_idx * num_classes + labels
    n = n_images * num_classes
    f = features.float()
    weighted = f.new_zeros(n, f.shape[1]).index_add(0, key, entropy.float()[:, None] * f)
    weight = f.new_zeros(n).index_add(0, key, entropy.float())
    plain = f.new_zeros(n, f.shape[1]).index_add(0, key, f)
    proto = torch.where((weight > 0)[:, None], weighted, plain)  # the scale does not matter for a cosine
    present = torch.bincount(key, minlength=n) > 0
    return F.normalize(proto, dim=1).view(n_images, num_classes, -1), present.view(n_images, num_classes)


def minority_quotas(class_counts: np.ndarray, budget: int, fraction: float, share: float) -> dict[int, int]:
    """Quota per minority class: the ``floor(fraction * C)`` classes with the fewest labeled boxes
    (ties by class index) share ``share * budget`` images equally (floored); zero quotas are dropped."""
    n_minor = int(fraction * len(class_counts))
    if n_minor == 0:
        return {}
    quota = int(share * budget / n_minor)
    minority = np.argsort(class_counts, kind="stable")[:n_minor]
    return {int(c): quota for c in minority} if quota > 0 else {}


def divproto_select(order: list[int], prototypes: list[tuple[np.ndarray, np.ndarray]], class_conf: np.ndarray,
                    quotas: dict[int, int], budget: int, intra_threshold: float, inter_threshold: float) -> list[int]:
    """Positions (into ``order``'s candidates) chosen by the diversity walk, then filled by ``order``.

    ``order``: candidate positions by uncertainty, highest first. ``prototypes[i]``: (classes [k],
    unit prototypes [k, F]) of candidate i. ``class_conf[i, c]``: highest confidence of class c
    among candidate i's detections.
    """
    quotas = dict(quotas)
    chosen: list[int] = []
    selected: dict[int, list[np.ndarray]] = {}  # class -> prototypes of the chosen images
    for i in order:
        if len(chosen) == budget:
            break
        classes, protos = prototypes[i]
        # M_intra: min over the image's classes of the max similarity to a chosen image's prototype.
        m_intra = min((float(np.max(np.stack(selected[c]) @ v)) if c in selected else -1.0
                       for c, v in zip(classes.tolist(), protos)), default=-1.0)
        if m_intra >= intra_threshold:
            continue
        if quotas and max(class_conf[i, c] for c in quotas) <= inter_threshold:
            continue
        chosen.append(i)
        for c, v in zip(classes.tolist(), protos):
            selected.setdefault(c, []).append(v)
        for c in [c for c in quotas if class_conf[i, c] > inter_threshold]:
            quotas[c] -= 1
            if quotas[c] == 0:
                del quotas[c]
    taken = set(chosen)
    chosen += [i for i in order if i not in taken][:budget - len(chosen)]
    return chosen


class EBALStrategy(Strategy):
    name = "ebal"

    def score(self, model, pool, labeled_ids, device, batch_size) -> pd.DataFrame:
        import torch

        from ..engine.predict import run_model
        from ..models.taps import anchor_features, capture_tower_outputs

        o = self.options
        C = model.num_classes
        if not hasattr(model.branches["cls"], "tower"):
            from ..io import InputError

            raise InputError(f"strategy ebal reads the classification tower's features at the detections; the "
                             f"{type(model).__name__} detector's classifier has no tower (use a RetinaNet arch)")
        scores: list[torch.Tensor] = []
        protos: list[tuple[np.ndarray, np.ndarray]] = []
        confs: list[torch.Tensor] = []

        with capture_tower_outputs(model, "cls") as towers:
            def on_batch(images, targets, out, dets):
                B = len(dets)
                keep = [d["scores"] >= o["score_threshold"] for d in dets]
                image_idx = torch.cat([torch.full((int(k.sum()),), b, dtype=torch.long, device=k.device)
                                       for b, k in enumerate(keep)])
                conf = torch.cat([d["scores"][k] for d, k in zip(dets, keep)])
                labels = torch.cat([d["labels"][k] for d, k in zip(dets, keep)])
                anchors = torch.cat([d["anchor_idx"][k] for d, k in zip(dets, keep)])
                feats = anchor_features(towers, image_idx, anchors, model.num_anchors)
                towers.clear()
                h = binary_entropy(conf)
                kept = entropy_nms(h, labels, feats, image_idx, B, o["enms_threshold"])
                scores.append(conf.new_zeros(B).index_add(0, image_idx[kept], h[kept]).double().cpu())
                p, present = class_prototypes(feats[kept], h[kept], labels[kept], image_idx[kept], B, C)
                p, present = p.cpu(), present.cpu()
                for b in range(B):
                    cls = torch.nonzero(present[b]).flatten()
                    protos.append((cls.numpy(), p[b, cls].numpy()))
                confs.append(conf.new_zeros(B * C).scatter_reduce(0, image_idx * C + labels, conf, "amax")
                             .view(B, C).cpu())

            run_model(model, pool, device, batch_size, on_batch, branches=("cls", "reg"))
        counts = np.zeros((len(pool.records), C), dtype=np.int64)
        for i, (im, _, box_labels, _) in enumerate(pool.records):
            if im["id"] in labeled_ids:  # the labeled boxes per class, for the minority classes
                counts[i] = np.bincount(box_labels, minlength=C)[:C]
        df = frame(pool, labeled_ids, score=torch.cat(scores).numpy(),
                   proto_classes=[c for c, _ in protos], prototypes=[v.ravel() for _, v in protos],
                   class_conf=list(torch.cat(confs).numpy()), class_counts=list(counts))
        df.loc[df["labeled"], "score"] = np.nan
        return df

    def select(self, scores: pd.DataFrame, budget: int, rng: np.random.Generator) -> list[int]:
        o = self.options
        unl = scores[~scores["labeled"]].sort_values(["score", "image_id"], ascending=[False, True],
                                                     kind="mergesort")
        class_conf = np.stack(unl["class_conf"].to_numpy())
        C = class_conf.shape[1]
        counts = np.stack(scores["class_counts"].to_numpy())[scores["labeled"].to_numpy()].sum(0) \
            if scores["labeled"].any() else np.zeros(C, dtype=np.int64)
        prototypes = []
        for classes, flat in zip(unl["proto_classes"], unl["prototypes"]):
            classes, flat = np.asarray(classes, dtype=np.int64), np.asarray(flat, dtype=np.float64)
            prototypes.append((classes, flat.reshape(len(classes), len(flat) // max(len(classes), 1))))
        quotas = minority_quotas(counts, budget, o["minority_fraction"], o["minority_budget"])
        chosen = divproto_select(list(range(len(unl))), prototypes, class_conf, quotas, budget,
                                 o["intra_threshold"], o["inter_threshold"])
        return [int(unl["image_id"].iloc[i]) for i in chosen]
