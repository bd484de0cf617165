"""Checkpoints: write and read them safely, and rebuild a trained detector from one.

A checkpoint follows torchvision's detection references:
``{model, optimizer, lr_scheduler, epoch, iteration, params, categories}`` (plus ``method`` for a method's own
model). Apart from training, so that the many steps that only load a model never import the trainer.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Callable

import torch

from .io import InputError, atomic_path
from .models import build_model


def params_digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_checkpoint(path: str | Path, ckpt: dict) -> None:
    """Write ``ckpt`` atomically with torch.save; its ``params`` as plain dicts (an audited tree unwrapped)."""
    if "params" in ckpt:
        from .params import plain

        ckpt = {**ckpt, "params": plain(ckpt["params"])}
    # Saved through a file object: torch.save names the archive's records after a *path*'s stem, which
    # would put the random temporary name into the bytes; this way the same weights give the same file.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(ckpt, f)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A checkpoint or resume state as a dict; InputError naming the file when it is missing, corrupt or unsafe."""
    if not Path(path).is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        # weights_only: a checkpoint is data, never code (pickled classes or functions are refused).
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = " ".join(line for line in str(e).splitlines() if "GLOBAL" in line or "Unsupported" in line)
        if "GLOBAL" in detail:
            raise InputError(f"{path}: refused: the file holds code or objects that are not tensors and plain data "
                             f"(torch.load(weights_only=True): {detail.strip()})") from None
        raise InputError(f"{path}: not a readable checkpoint (corrupt or another format): "
                         f"{detail.strip() or str(e).splitlines()[0]}") from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise InputError(f"{path}: not a readable checkpoint (corrupt or truncated): "
                         f"{str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict):
        raise InputError(f"{path}: not an activedet checkpoint (expected a dict, got {type(ckpt).__name__})")
    return ckpt


def read_resume_state(state_path: str | Path, map_location, log: Callable[[str], None]) -> dict:
    """The resume state at ``state_path``, or {} when there is none or it cannot be read (training restarts)."""
    if not state_path or not Path(state_path).is_file():
        return {}
    try:
        return load_checkpoint(state_path, map_location=map_location)
    except InputError as e:
        log(f"ignoring the resume state: {e}; training starts from the beginning")
        return {}


def load_model(path: str | Path, device: torch.device | str = "cpu"):
    """Rebuild a trained detector from its checkpoint: (model in eval mode, checkpoint dict)."""
    path = Path(path)
    ckpt = load_checkpoint(path, map_location=device)
    missing = [k for k in ("model", "params", "categories") if k not in ckpt]
    if missing:
        raise InputError(f"{path}: not an activedet checkpoint (missing {', '.join(missing)}); "
                         f"give the model.pt that train writes, not its .resume state")
    # The checkpoint holds every weight: the pretrained backbone file it started from is not read again.
    params = {**ckpt["params"], "detector": {**ckpt["params"]["detector"], "backbone_weights": None}}
    model = build_model(params, len(ckpt["categories"]), ckpt.get("method", "detector"))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def check_trainer(ckpt: dict, model_path, strategy: str, trainer: str) -> None:
    """Refuse a checkpoint from another trainer than ``trainer`` (the one strategy ``strategy`` scores with):
    InputError naming the file and the command that trains the right model."""
    method = ckpt.get("method", "detector")
    if method != trainer:
        raise InputError(f"{model_path}: a model trained by '{method}', but strategy {strategy} scores with "
                         f"a model trained by '{trainer}'"
                         + (f" (python -m activedet train --strategy {trainer})" if trainer != "detector" else ""))
