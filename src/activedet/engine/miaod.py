"""MI-AOD training within one cycle: label-set training, min- and max-discrepancy steps.

Schedule as in the released code (docs/methods.md, "Training schedule within one cycle"): phases
``label x3, then twice [min x1, max x1, label x3]`` in units of "epochs", each
phase with a fresh SGD optimizer. To train every strategy with the same recipe,
the total number of labeled iterations equals the plain detector's
(``train.epochs`` with its floor); the 13 epoch units split it, and the
learning rate follows the plain recipe's warm-up and drops over the labeled
iterations. Min/max iterations add one unlabeled step each.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from ..data.dataset import DetectionDataset, augment_batch
from ..models import build_model
from ..models.miaod import (discrepancy, image_labels, image_scores, level_index, mil_instance_scores, mil_loss,
                            pseudo_image_labels)
from ..models.retinanet import RetinaNet
from .train import (Logger, _finish, batch_indices, load_batch, lr_factor, params_digest, read_resume_state,
                    resolve_device, save_checkpoint, seed_everything, set_threads, total_iterations)

PHASE_UNITS = {"label": 3, "min": 1, "max": 1}


def schedule(cfg: dict) -> list[str]:
    """Phase sequence, e.g. ['label', 'min', 'max', 'label', 'min', 'max', 'label'] (order is a parameter)."""
    phases = ["label"]
    for _ in range(cfg["rounds"]):
        phases += list(cfg["order"]) + ["label"]
    if not cfg["iul"]:
        phases = ["label"] * len(phases)
    return phases


def phase_iterations(phases: list[str], total: int, label_units: int = PHASE_UNITS["label"]) -> list[int]:
    """Iterations per phase, ``total`` split by epoch units (label ``label_units``, min 1, max 1)."""
    units = [label_units if p == "label" else PHASE_UNITS[p] for p in phases]
    bounds = [round(total * sum(units[:i + 1]) / sum(units)) for i in range(len(units))]
    return [b - a for a, b in zip([0] + bounds[:-1], bounds)]


def head_outputs(model: RetinaNet, images: torch.Tensor, phase: str = "label", labeled: bool = True,
                 use_mil: bool = True) -> dict:
    """The branches a step's loss reads; the max step trains only f1/f2, so there the backbone, f_r
    and f_mil run without a graph (no backward through them).

    Unlabeled losses never read f_r, and a labeled loss without the MIL term never reads f_mil: they
    are not computed (a tower costs about as much as the tiny backbone; the values are unchanged).
    """
    names = ("cls", "cls2") + (("reg",) if labeled else ()) + (("mil",) if use_mil or not labeled else ())
    return model(images, branches=names, grad_branches=("cls", "cls2") if phase == "max" else None)


def labeled_loss(model, out, images, targets, params, use_mil: bool, instance_loss: str = "mean") -> torch.Tensor:
    """Eq. 1 (both classifiers) plus, with IUR on labeled data, the image classification loss (Eq. 6).

    ``instance_loss``: mean - 0.5(FL(f1) + FL(f2)) as the released code; sum - FL(f1) + FL(f2), the paper's Eq. 1
    (``l_det = Σ_i FL(ŷ^f1_i) + FL(ŷ^f2_i) + SmoothL1(ŷ^fr_i)``; the boxes take L1 as in the released code).
    """
    det = params["detector"]
    anchors = model.anchors(images)
    losses = model.detection_loss(out, ("cls", "cls2"), anchors, targets, det)  # RetinaNet or SSD loss
    loss = losses["loss"]
    if instance_loss == "sum":  # loss_cls is the classifiers' mean: adding it once more makes the sum
        loss = loss + losses["loss_cls"]
    if use_mil:
        y_cls = mil_instance_scores(out["cls"], out["cls2"], out["mil"], out["level_sizes"])
        labels = image_labels([t_["labels"] for t_ in targets], model.num_classes, images.device)
        loss = loss + mil_loss(image_scores(y_cls, out["level_sizes"]), labels)
    return loss


def uniform_weight(level_sizes: list[int], num_classes: int, device=None) -> torch.Tensor:
    """w = 1 at the MIL weights' mass: ``1 / (N_l · C)`` for every anchor of level l and class, [1, A, 1].

    The MIL weight (Eq. 5 as coded) is a softmax over a level's N_l anchors times a softmax over the
    C classes, so it sums to 1 over each level's anchors and classes. Replacing both factors by
    uniform distributions keeps that mass and removes only the re-weighting; the raw w = 1
    (``weight: one_raw``) makes the discrepancy about N_l·C times larger, a change of λ's scale.
    """
    n = torch.tensor(level_sizes, device=device, dtype=torch.float32)[level_index(level_sizes, device)]
    return (1.0 / (n * num_classes))[None, :, None]


def discrepancy_weight(cfg: dict, out: dict, y_cls: torch.Tensor) -> torch.Tensor | float:
    """w in Eq. 7 per ``cfg['weight']`` (Table 3): ``mil`` ŷ^cls, ``f1`` σ(f1), ``one`` uniform at the
    MIL weights' mass (:func:`uniform_weight`), ``one_raw`` the constant 1. Without IUR (Table 1's
    "IUL without IUR") w is ``one``, or ``one_raw`` when ``cfg['weight']`` asks for it."""
    kind = cfg["weight"] if cfg["iur"] or cfg["weight"] == "one_raw" else "one"
    if kind == "mil":
        return y_cls
    if kind == "f1":
        return torch.sigmoid(out["cls"])
    if kind == "one_raw":
        return 1.0
    return uniform_weight(out["level_sizes"], out["cls"].shape[-1], out["cls"].device)


def unlabeled_loss(model, out, cfg: dict, maximize: bool) -> torch.Tensor:
    """Eq. 3/7 discrepancy (re-weighted per ``cfg['weight']``) and, in the min step, the pseudo-label MIL loss."""
    f1, f2 = out["cls"], out["cls2"]
    y_cls = mil_instance_scores(f1, f2, out["mil"], out["level_sizes"])
    # IUR: w in Eq. 7 re-weights the discrepancy; iur_set says where the MIL loss (Eq. 6) applies.
    weight = discrepancy_weight(cfg, out, y_cls)
    # Eq. 7 sums over images; dividing by the batch keeps λ's meaning independent of the batch size
    # (the released code trains with 2 images per GPU, the default here 16).
    loss = discrepancy(f1, f2, weight, cfg["lambda"], maximize=maximize) / f1.shape[0]
    if not maximize and cfg["iur"] and cfg["iur_set"] == "all":
        pseudo = pseudo_image_labels(f1, f2, cfg["pseudo_threshold"])
        has_label = pseudo.sum(dim=1) > 0  # per-image mask (the released code zeroed the whole batch)
        loss = loss + mil_loss(image_scores(y_cls, out["level_sizes"]), pseudo, has_label)
    return loss


def set_trainable(model: RetinaNet, phase: str, frozen: set[int] = frozenset()) -> list[torch.nn.Parameter]:
    """label: everything; min: all but f1/f2; max: only f1/f2. Returns the trainable parameters.

    ``frozen`` (parameter ids) never train in any phase: the ResNet stem, layer1 and BN stay frozen.
    """
    instance = {id(p) for name in ("cls", "cls2") for p in model.branches[name].parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen
                         and (phase == "label" or ((id(p) in instance) == (phase == "max"))))
    return [p for p in model.parameters() if p.requires_grad]


def _resume(state_path, digest: str, model, phases: list[str], device, total: int, log):
    """(phase, iteration, history, optimizer state or None) from a resume state with the same ``digest``; a state
    saved inside a phase carries that phase's optimizer. (0, 0, [], None) otherwise."""
    if not (state_path and Path(state_path).is_file()):
        return 0, 0, [], None
    state = read_resume_state(state_path, device, log)
    if state.get("digest") != digest:
        return 0, 0, [], None
    model.load_state_dict(state["model"])
    log(f"resumed from {state_path} at phase {state['phase']} ({phases[state['phase']]}), "
        f"iteration {state['iteration']}/{total}")
    return state["phase"], state["iteration"], state["history"], state.get("optimizer")


def _iteration(model, opt, trainable, phase: str, batch, next_unlabeled, params: dict, mcfg: dict, seed: int,
               it: int):
    """One iteration: the labeled step (Eq. 1, + Eq. 6 with IUR), then in min/max phases the unlabeled step on
    the batch ``next_unlabeled()`` loads (Eqs. 2-3 re-weighted). (labeled loss, unlabeled loss or None);
    ``batch`` is augmented in place."""
    cfg = params["train"]
    images, targets = batch
    if cfg["augment"]["enabled"]:
        augment_batch(images, targets, torch.Generator().manual_seed(seed * 7919 + it), cfg["augment"])
    use_mil = mcfg["iur"] and mcfg["iur_set"] in ("labeled", "all") and phase != "max"
    loss_l = labeled_loss(model, head_outputs(model, images, phase, use_mil=use_mil), images, targets,
                          params, use_mil, mcfg["instance_loss"])
    opt.zero_grad(set_to_none=True)
    loss_l.backward()
    if cfg["grad_clip"]:
        torch.nn.utils.clip_grad_norm_(trainable, cfg["grad_clip"])
    opt.step()
    loss_u = None
    if phase in ("min", "max"):
        u_images, _ = next_unlabeled()
        loss_u = unlabeled_loss(model, head_outputs(model, u_images, phase, labeled=False), mcfg,
                                maximize=phase == "max")
        opt.zero_grad(set_to_none=True)
        loss_u.backward()
        if cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(trainable, cfg["grad_clip"])
        opt.step()
    return loss_l, loss_u


def train_miaod(params: dict, labeled: DetectionDataset, unlabeled: DetectionDataset, out_path: str | Path,
                seed: int, state_path: str | Path | None = None, log: Callable[[str], None] | None = None,
                options: dict | None = None) -> dict:
    """Train the MI-AOD detector of one cycle; write the checkpoint; return a summary.

    ``options`` are the MI-AOD options (default ``strategies.miaod``; a variant passes its own).
    ``state_path`` holds a resumable state written at every phase end and every
    ``train.checkpoint_every`` iterations inside a phase (then with the phase's optimizer): a killed
    job resumes from it, both batch streams at the positions they had reached, and ends with the
    same weights as an uninterrupted run.
    """
    log = log or Logger()
    cfg, mcfg = params["train"], options or params["strategies"]["miaod"]
    device = resolve_device(params["device"])
    set_threads(params["num_threads"])
    seed_everything(seed)
    model = build_model(params, len(labeled.categories), "miaod").to(device)
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    total = total_iterations(len(labeled), cfg)
    phases = schedule(mcfg)
    counts = phase_iterations(phases, total, mcfg["label_units"])
    lr_at = lr_factor(cfg, total)
    digest = params_digest({"params": {"detector": params["detector"], "train": cfg, "miaod": mcfg}, "seed": seed,
                            "labeled": [r[0]["id"] for r in labeled.records],
                            "unlabeled": [r[0]["id"] for r in unlabeled.records]})
    start_phase, start_it, history, opt_state = _resume(state_path, digest, model, phases, device, total, log)
    # Every iteration draws one labeled batch; only min/max iterations draw an unlabeled one, so a resumed
    # run continues the unlabeled stream at the number of unlabeled batches already consumed.
    done_in_phase = start_it - sum(counts[:start_phase])
    unlabeled_done = (sum(n for p_, n in zip(phases[:start_phase], counts) if p_ != "label")
                      + (done_in_phase if start_phase < len(phases) and phases[start_phase] != "label" else 0))
    labeled_batches = batch_indices(len(labeled), cfg["batch_size"], seed, start_it)
    # The unlabeled loader cycles (never StopIteration) and its batches are flagged as unlabeled explicitly.
    unlabeled_batches = batch_indices(len(unlabeled), cfg["batch_size"], seed + 7_777, unlabeled_done)
    it = start_it
    every = cfg["checkpoint_every"]
    t0 = time.perf_counter()
    model.train()
    for k in range(start_phase, len(phases)):
        phase, n = phases[k], counts[k]
        trainable = set_trainable(model, phase, frozen)
        # A fresh optimizer per phase, as in the released code.
        opt = torch.optim.SGD(trainable, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
        first = 0
        if k == start_phase and done_in_phase:
            opt.load_state_dict(opt_state)  # momentum buffers of the interrupted phase
            first = done_in_phase
        for j in range(first, n):
            for g in opt.param_groups:
                g["lr"] = cfg["lr"] * lr_at(it)
            batch = load_batch(labeled, next(labeled_batches), device)
            next_unlabeled = lambda: load_batch(unlabeled, next(unlabeled_batches), device)  # noqa: E731
            loss_l, loss_u = _iteration(model, opt, trainable, phase, batch, next_unlabeled, params, mcfg, seed, it)
            value = float(loss_l.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"MI-AOD training diverged at iteration {it} ({phase}); lower train.lr")
            it += 1
            if it % 50 == 0 or it == total:
                history.append({"iteration": it, "phase": phase, "loss": value,
                                "loss_unlabeled": None if loss_u is None else float(loss_u.detach())})
                log(f"iter {it}/{total} {phase} loss {value:.4f}"
                    + ("" if loss_u is None else f" unlabeled {float(loss_u.detach()):.4f}"))
            if state_path and every and it % every == 0 and j + 1 < n:  # inside a phase: keep its optimizer
                save_checkpoint(state_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "phase": k,
                                             "iteration": it, "history": history, "digest": digest})
        if state_path and k + 1 < len(phases):
            save_checkpoint(state_path, {"model": model.state_dict(), "phase": k + 1, "iteration": it,
                                         "history": history, "digest": digest})
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen)
    seconds = time.perf_counter() - t0
    ckpt = {"model": model.state_dict(), "optimizer": None, "lr_scheduler": None, "epoch": len(phases),
            "iteration": total, "params": params, "seed": seed, "categories": labeled.categories,
            "history": history, "n_images": len(labeled), "method": "miaod"}
    _finish(out_path, ckpt, state_path)
    print(f"trained MI-AOD: {total} labeled iterations in {seconds:.1f}s", file=sys.stderr)
    return {"iterations": total, "seconds": seconds, "n_images": len(labeled), "n_unlabeled": len(unlabeled),
            "phases": list(zip(phases, counts)), "final_loss": history[-1]["loss"] if history else None}
