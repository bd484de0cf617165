"""The torch device and thread count of a step."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device: {name} requested but CUDA is not available (use device: auto or cpu)")
    return dev


def set_threads(n: int) -> None:
    if n and n > 0:
        torch.set_num_threads(n)
