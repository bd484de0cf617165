"""Training: SGD with momentum, warm-up and step drops, resumable state, checkpoint dict.

The checkpoint follows torchvision's detection references:
``{model, optimizer, lr_scheduler, epoch, iteration, params, categories}``.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..checkpoint import (  # noqa: F401 (re-exported)
    load_checkpoint,
    load_model,
    params_digest,
    read_resume_state,
    save_checkpoint,
)
from ..data.dataset import DetectionDataset, augment_batch, collate
from ..device import resolve_device, set_threads  # noqa: F401 (re-exported)
from ..models import build_model


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


def total_iterations(n_images: int, cfg: dict) -> int:
    it = math.ceil(cfg["epochs"] * n_images / cfg["batch_size"])
    it = max(it, cfg["min_iterations"], 1)
    if cfg.get("max_iterations"):
        it = min(it, cfg["max_iterations"])
    return it


def lr_factor(cfg: dict, total: int) -> Callable[[int], float]:
    """Linear warm-up, then x0.1 after each fraction in ``lr_drops``."""
    drops = [int(f * total) for f in cfg["lr_drops"]]
    warm = cfg["warmup_iterations"]

    def f(it: int) -> float:
        w = min(1.0, (it + 1) / warm) if warm > 0 else 1.0
        return w * 0.1 ** sum(it >= d for d in drops)

    return f


def make_optimizer(parameters, cfg: dict, total: int, lr: float | None = None):
    params = [p for p in parameters if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr if lr is not None else cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg, total))
    return opt, sched


def batch_indices(n: int, batch_size: int, seed: int, start_iteration: int = 0) -> Iterator[list[int]]:
    """Endless batches over shuffled epochs; epoch e's order depends only on (seed, e), so a resumed run
    sees exactly the batches an uninterrupted one would."""
    per_epoch = max(1, math.ceil(n / batch_size))
    it = start_iteration
    while True:
        epoch, pos = divmod(it, per_epoch)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g).tolist()
        for b in range(pos, per_epoch):
            batch = order[b * batch_size:(b + 1) * batch_size]
            if len(batch) < batch_size:  # pad the last batch of an epoch with the epoch's first images
                batch = batch + order[: batch_size - len(batch)]
            yield batch
            it += 1


def load_batch(dataset: DetectionDataset, idx: list[int], device: torch.device):
    images, targets = collate([dataset[i] for i in idx])
    images = images.to(device, non_blocking=True)
    for t in targets:
        keep = ~t["difficult"]  # VOC difficult objects and COCO crowd regions are excluded from training
        t["boxes"], t["labels"] = t["boxes"][keep].to(device), t["labels"][keep].to(device)
    return images, targets


class Logger:
    def __init__(self, every: int = 50, stream=sys.stdout):
        self.every, self.stream, self.t0 = every, stream, time.perf_counter()

    def __call__(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f}s] {msg}", file=self.stream, flush=True)


def _resume(state_path, digest: str, model, opt, sched, device, total: int, log) -> tuple[int, list]:
    """(start iteration, history) from a resume state written with the same ``digest``; (0, []) otherwise."""
    if not (state_path and Path(state_path).is_file()):
        return 0, []
    state = read_resume_state(state_path, device, log)
    if state.get("digest") != digest:
        return 0, []
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["lr_scheduler"])
    log(f"resumed from {state_path} at iteration {state['iteration']}/{total}")
    return state["iteration"], state["history"]


def _history_row(it: int, losses: dict, opt, stats: dict) -> dict:
    return {"iteration": it + 1, "loss": float(losses["loss"].detach()), "loss_cls": float(losses["loss_cls"].detach()),
            "loss_reg": float(losses["loss_reg"].detach()), "lr": opt.param_groups[0]["lr"], **stats}


def _progress_bar(total: int, start: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="train", file=sys.stderr)


def _finish(out_path, ckpt: dict, state_path) -> None:
    """Write the checkpoint, then drop the resume state it supersedes."""
    save_checkpoint(out_path, ckpt)
    if state_path and Path(state_path).is_file():
        Path(state_path).unlink()


def train_detector(params: dict, dataset: DetectionDataset, out_path: str | Path, seed: int,
                   state_path: str | Path | None = None, log: Callable[[str], None] | None = None,
                   objective=None) -> dict:
    """Train a fresh detector on ``dataset``; write the checkpoint to ``out_path``; return a summary.

    ``state_path`` (not a pipeline output) holds a resumable state written every
    ``train.checkpoint_every`` iterations: a killed job resumes from it and ends
    with the same weights as an uninterrupted run.

    ``objective`` (e.g. ``engine.ll4al.LL4ALObjective``) adds a method's own term to the
    detection loss with the recipe otherwise unchanged: it names the ``method`` whose
    modules ``build_model`` attaches, its ``options``, whether it reads the FPN features
    (``needs_features``), ``objective(model, outputs, losses, iteration, total) -> (loss, stats)``
    and ``clip_groups(model)``, the parameter groups whose gradient norms are clipped apart.
    """
    log = log or Logger()
    cfg, det = params["train"], params["detector"]
    device = resolve_device(params["device"])
    set_threads(params["num_threads"])
    seed_everything(seed)
    method = objective.method if objective is not None else "detector"
    model = build_model(params, len(dataset.categories), method).to(device)
    total = total_iterations(len(dataset), cfg)
    opt, sched = make_optimizer(model.parameters(), cfg, total)
    digest_of = {"params": {k: params[k] for k in ("detector", "train")}, "seed": seed,
                 "images": [r[0]["id"] for r in dataset.records]}
    if objective is not None:  # the plain detector's digest stays as it was, so its resume states stay valid
        digest_of["method"] = {"name": method, "options": objective.options}
    digest = params_digest(digest_of)
    start, history = _resume(state_path, digest, model, opt, sched, device, total, log)
    model.train()
    t0 = time.perf_counter()
    batches = batch_indices(len(dataset), cfg["batch_size"], seed, start)
    progress = _progress_bar(total, start) if cfg["progress"] else None
    running = 0.0
    for it in range(start, total):
        images, targets = load_batch(dataset, next(batches), device)
        if cfg["augment"]["enabled"]:
            augment_batch(images, targets, torch.Generator().manual_seed(seed * 7919 + it), cfg["augment"])
        out = model(images, branches=("cls", "reg"), return_features=objective is not None and objective.needs_features)
        losses = model.detection_loss(out, ("cls",), model.anchors(images), targets, det)  # RetinaNet or SSD loss
        total_loss, stats = losses["loss"], {}
        if objective is not None:
            method_loss, stats = objective(model, out, losses, it, total)
            total_loss = total_loss + method_loss
        opt.zero_grad(set_to_none=True)
        total_loss.backward()
        if cfg["grad_clip"]:
            for group in objective.clip_groups(model) if objective is not None else [model.parameters()]:
                torch.nn.utils.clip_grad_norm_(group, cfg["grad_clip"])
        opt.step()
        sched.step()
        loss = float(losses["loss"].detach())
        if not math.isfinite(float(total_loss.detach())):
            raise FloatingPointError(f"training diverged at iteration {it} (loss {float(total_loss.detach())}); "
                                     f"lower train.lr")
        running = loss if it == start else 0.9 * running + 0.1 * loss
        if progress:
            progress.update(1)
            progress.set_postfix(loss=f"{running:.3f}")
        if (it + 1) % 50 == 0 or it + 1 == total:
            history.append(_history_row(it, losses, opt, stats))
            if not progress:
                log(f"iter {it + 1}/{total} loss {running:.4f} lr {opt.param_groups[0]['lr']:.5f}")
        if state_path and cfg["checkpoint_every"] and (it + 1) % cfg["checkpoint_every"] == 0 and it + 1 < total:
            save_checkpoint(state_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                         "lr_scheduler": sched.state_dict(), "iteration": it + 1,
                                         "history": history, "digest": digest})
    if progress:
        progress.close()
    seconds = time.perf_counter() - t0
    n_per_epoch = max(1, math.ceil(len(dataset) / cfg["batch_size"]))
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(),
            "epoch": total / n_per_epoch, "iteration": total, "params": params, "seed": seed,
            "categories": dataset.categories, "history": history, "n_images": len(dataset)}
    # load_model rebuilds the method's modules; plain checkpoints stay as they were
    _finish(out_path, ckpt if objective is None else {**ckpt, "method": method}, state_path)
    done = total - start
    return {"iterations": total, "seconds": seconds, "images_per_second": done * cfg["batch_size"] / max(seconds, 1e-9),
            "final_loss": history[-1]["loss"] if history else None, "n_images": len(dataset)}
