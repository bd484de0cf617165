"""Image classification data: sklearn's digits (embedded) or CIFAR-10 from a local folder (never downloaded)."""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...io import InputError

CIFAR_RECORD = 1 + 3 * 32 * 32  # the binary version: label byte, then 1024 R, 1024 G, 1024 B bytes
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = "test_batch"
CIFAR_HELP = ("nothing is downloaded: get cifar-10-binary.tar.gz (or cifar-10-python.tar.gz) from "
              "https://www.cs.toronto.edu/~kriz/cifar.html and unpack it there, or set "
              "paper_reports.table2.cifar10_root to the folder that holds it")


@dataclass
class ClassificationData:
    name: str
    x_pool: np.ndarray  # [N, C, H, W]: float32 in [0, 1], or uint8 (0..255; CIFAR stays 150 MB instead of 600)
    y_pool: np.ndarray  # [N] int64
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def channels(self) -> int:
        return int(self.x_pool.shape[1])


def as_float(x: np.ndarray):
    """A batch of images as a float tensor in [0, 1]."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()


def load_digits_data(test_fraction: float, split_seed: int = 0) -> ClassificationData:
    """sklearn's 1797 handwritten digits (8x8), split once into a pool and a stratified test set."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    x_pool, x_test, y_pool, y_test = train_test_split(x, y, test_size=test_fraction, stratify=y,
                                                      random_state=split_seed)
    return ClassificationData("digits", x_pool, y_pool, x_test, y_test, 10)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles the CIFAR python batches (dicts of bytes, lists and numpy arrays) and nothing else:
    a pickle may otherwise run any code it names."""

    # numpy's array reconstruction, and _codecs.encode, with which protocol-2 pickles written by Python 3 store bytes
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return super().find_class(module, name)


def _read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _ArraysOnly(io.BytesIO(f.read()), encoding="bytes").load()
        d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
        x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d["labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, AttributeError, TypeError) as e:
        raise InputError(f"{path}: not a CIFAR-10 python batch ({e})") from None
    if len(x) != len(y):
        raise InputError(f"{path}: {len(x)} images but {len(y)} labels")
    return x, y


def _read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise InputError(f"{path}: {raw.size} bytes is not a whole number of CIFAR-10 records of {CIFAR_RECORD} "
                         f"bytes (truncated or another file)")
    rec = raw.reshape(-1, CIFAR_RECORD)
    return rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0].astype(np.int64)


def find_cifar10(root: str | Path) -> tuple[Path, str]:
    """The folder holding the batches and its format ('bin' or 'python')."""
    if not str(root):
        raise InputError(f"paper_reports.table2.cifar10_root is not set; {CIFAR_HELP}")
    root = Path(root)
    for folder, fmt, first in ((root / "cifar-10-batches-bin", "bin", "data_batch_1.bin"),
                               (root / "cifar-10-batches-py", "python", "data_batch_1"),
                               (root, "bin", "data_batch_1.bin"), (root, "python", "data_batch_1")):
        if (folder / first).is_file():
            return folder, fmt
    raise InputError(f"{root}: CIFAR-10 not found (expected cifar-10-batches-bin/data_batch_1.bin or "
                     f"cifar-10-batches-py/data_batch_1 there); {CIFAR_HELP}")


def load_cifar10(root: str | Path) -> ClassificationData:
    """CIFAR-10's 50000 training images as the pool and its 10000 test images, from a local folder."""
    folder, fmt = find_cifar10(root)
    suffix = ".bin" if fmt == "bin" else ""
    reader = _read_binary_batch if fmt == "bin" else _read_python_batch
    parts = []
    for name in CIFAR_TRAIN + [CIFAR_TEST]:
        path = folder / f"{name}{suffix}"
        if not path.is_file():
            raise InputError(f"{path}: missing CIFAR-10 batch; {CIFAR_HELP}")
        x, y = reader(path)
        if y.size and (y.min() < 0 or y.max() > 9):
            raise InputError(f"{path}: labels outside 0..9")
        parts.append((x, y))
    x_pool = np.concatenate([x for x, _ in parts[:-1]])
    y_pool = np.concatenate([y for _, y in parts[:-1]])
    x_test, y_test = parts[-1]
    return ClassificationData("cifar10", x_pool, y_pool, x_test, y_test, 10)


def load(cfg: dict) -> ClassificationData:
    """The data of a ``paper_reports.table2`` section."""
    if cfg["dataset"] == "digits":
        return load_digits_data(cfg["test_fraction"])
    if cfg["dataset"] == "cifar10":
        return load_cifar10(cfg["cifar10_root"])
    raise InputError(f"paper_reports.table2.dataset: unknown dataset {cfg['dataset']!r} (known: digits, cifar10)")
