"""Training with instance uncertainty learning (IUL) for image classification, MI-AOD's schedule.

Phases as in the detector (``engine.miaod.schedule``): label-set training, then rounds of a min
and a max discrepancy step and label-set training again, each phase with a fresh SGD optimizer.

* label: both heads learn the labels (cross-entropy), everything trains;
* max: only the heads train - a labeled step, then an unlabeled step that maximises their
  discrepancy (minimising ``λ·(1 − d)``, the released code's form: the gradient of ``−λ·d``);
* min: the heads are frozen, the features train - a labeled step, then an unlabeled step that
  minimises ``λ·d``.

The discrepancy of an image is ``mean_c |p1 − p2|`` of the heads' softmax distributions (the
classifier has one label per image, so softmax replaces the detector's per-class sigmoids, as in
Saito et al.'s maximum classifier discrepancy). Without IUL every phase is label-set training.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...engine.miaod import phase_iterations, schedule
from ...engine.train import batch_indices
from .data import as_float
from .model import TwoHeadClassifier, build_classifier


def discrepancy(l1: torch.Tensor, l2: torch.Tensor) -> torch.Tensor:
    """Per image ``mean_c |softmax(l1) − softmax(l2)|``: [B]."""
    return (l1.softmax(dim=-1) - l2.softmax(dim=-1)).abs().mean(dim=-1)


def labeled_loss(model: TwoHeadClassifier, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    l1, l2 = model(x)
    return 0.5 * (F.cross_entropy(l1, y) + F.cross_entropy(l2, y))


def set_phase(model: TwoHeadClassifier, phase: str) -> list[torch.nn.Parameter]:
    """label: all parameters; min: the features; max: the heads. Returns the trainable parameters.

    In the max step the features are also in eval mode, so their BatchNorm statistics (ResNet-18)
    stay as they are: a frozen part changes in no way.
    """
    heads = {id(p) for p in model.heads.parameters()}
    for p in model.parameters():
        p.requires_grad_(phase == "label" or ((id(p) in heads) == (phase == "max")))
    model.train()
    if phase == "max":
        model.features.eval()
    return [p for p in model.parameters() if p.requires_grad]


def train_step(model: TwoHeadClassifier, opt: torch.optim.Optimizer, phase: str, x_l: torch.Tensor,
               y_l: torch.Tensor, x_u: torch.Tensor | None, lam: float) -> tuple[float, float | None]:
    """One iteration: a labeled step and, in the min/max phases, an unlabeled discrepancy step."""
    loss = labeled_loss(model, x_l, y_l)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if phase not in ("min", "max") or x_u is None:
        return float(loss.detach()), None
    d = discrepancy(*model(x_u)).mean()
    loss_u = lam * (1.0 - d) if phase == "max" else lam * d
    opt.zero_grad(set_to_none=True)
    loss_u.backward()
    opt.step()
    return float(loss.detach()), float(loss_u.detach())


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The usual CIFAR augmentation: random 4-pixel-padded crop and horizontal flip, per image.

    Vectorised over the batch with gathers: torchvision's RandomCrop / RandomHorizontalFlip draw once per call.
    """
    B, _, H, W = x.shape
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy = torch.randint(0, 9, (B,), generator=generator)
    dx = torch.randint(0, 9, (B,), generator=generator)
    rows = (dy[:, None] + torch.arange(H))[:, None, :, None].expand(B, x.shape[1], H, W + 8)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(W))[:, None, None, :].expand(B, x.shape[1], H, W)
    out = out.gather(3, cols)
    flip = torch.rand(B, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def total_iterations(n_labeled: int, cfg: dict) -> int:
    return max(math.ceil(cfg["epochs"] * n_labeled / cfg["batch_size"]), cfg["min_iterations"], 1)


def train_classifier(cfg: dict, x_l: np.ndarray, y_l: np.ndarray, x_u: np.ndarray, num_classes: int,
                     seed: int, iul: bool, device: torch.device) -> tuple[TwoHeadClassifier, dict]:
    """Train a fresh two-head classifier on labeled (and, with IUL, unlabeled) images."""
    torch.manual_seed(seed)
    model = build_classifier(cfg["arch"], x_l.shape[1], num_classes).to(device)
    total = total_iterations(len(x_l), cfg)
    phases = schedule({"rounds": cfg["rounds"], "order": cfg["order"], "iul": iul})
    counts = phase_iterations(phases, total)
    drops = [int(f * total) for f in cfg["lr_drops"]]
    labeled_batches = batch_indices(len(x_l), cfg["batch_size"], seed)
    unlabeled_batches = batch_indices(len(x_u), cfg["batch_size"], seed + 7_777) if len(x_u) else None
    y_all = torch.from_numpy(y_l)
    gen = torch.Generator().manual_seed(seed)
    it, history = 0, []
    for phase, n in zip(phases, counts):
        params = set_phase(model, phase)
        opt = torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
        for _ in range(n):
            for g in opt.param_groups:
                g["lr"] = cfg["lr"] * 0.1 ** sum(it >= d for d in drops)
            idx = next(labeled_batches)
            xb = as_float(x_l[idx])
            if cfg["augment"]:
                xb = augment(xb, gen)
            xu = None
            if unlabeled_batches is not None and phase in ("min", "max"):
                xu = as_float(x_u[next(unlabeled_batches)])
                if cfg["augment"]:
                    xu = augment(xu, gen)
                xu = xu.to(device)
            loss, loss_u = train_step(model, opt, phase, xb.to(device), y_all[idx].to(device), xu, cfg["lambda"])
            if not math.isfinite(loss):
                raise FloatingPointError(f"classifier training diverged at iteration {it} ({phase}); lower lr")
            it += 1
            if it % 50 == 0 or it == total:
                history.append({"iteration": it, "phase": phase, "loss": loss, "loss_unlabeled": loss_u})
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return model, {"iterations": total, "phases": list(zip(phases, counts)), "history": history}


@torch.no_grad()
def predict(model: TwoHeadClassifier, x: np.ndarray, device: torch.device, batch_size: int = 512
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Both heads' logits for every image (eval mode): ([N, C], [N, C]) on the CPU."""
    model.eval()
    out1, out2 = [], []
    for start in range(0, len(x), batch_size):
        l1, l2 = model(as_float(x[start:start + batch_size]).to(device))
        out1.append(l1.cpu())
        out2.append(l2.cpu())
    return torch.cat(out1), torch.cat(out2)
