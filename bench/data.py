"""Bench inputs: digit scenes generated into the scratch folder, pools of any size, trained models."""
from __future__ import annotations

import copy
import itertools
from pathlib import Path

from .common import Context


def bench_params(ctx: Context, **train) -> dict:
    """The run's params with training shortened (``train`` overrides) and threads left as they are."""
    from activedet import params as P

    p = copy.deepcopy(ctx.params)
    p["train"].update(train)
    p["train"]["progress"] = False
    p["train"]["checkpoint_every"] = 0
    p["device"] = str(ctx.device)
    p["num_threads"] = 0
    return P.validate(p, "bench params")


def scenes(ctx: Context, n_pool: int, n_test: int = 0) -> dict:
    """The first ``n_pool`` pool and ``n_test`` test digit scenes of the run's generator settings.

    One set is generated per run (image i of a split does not depend on the split's size, so smaller
    sets are prefixes of it): 2000 + 500 images, or 96 + 24 with ``--quick``.
    """
    from activedet.data.coco import load_coco
    from activedet.data.digit_scenes import generate

    n_base, n_base_test = base_sizes(ctx)
    if n_pool > n_base or n_test > n_base_test:
        raise ValueError(f"the bench generates {n_base} + {n_base_test} scenes; asked for {n_pool} + {n_test}")
    if "scenes" not in ctx._cache:
        cfg = dict(ctx.params["dataset"]["digit_scenes"])
        cfg.update(n_pool=n_base, n_test=n_base_test)
        out = ctx.scratch / "scenes"
        generate(out, **cfg)
        ctx._cache["scenes"] = (out, load_coco(out / "pool.json"), load_coco(out / "test.json"))
    out, pool, test = ctx._cache["scenes"]
    return {"pool": pool.subset(pool.image_ids[:n_pool]), "pool_images": out / "pool" / "images",
            "test": test.subset(test.image_ids[:n_test]), "test_images": out / "test" / "images"}


def base_sizes(ctx: Context) -> tuple[int, int]:
    """(pool, test) images generated for the run."""
    if ctx.quick:
        return 96, 24
    cfg = ctx.params["dataset"]["digit_scenes"]
    return max(2000, cfg["n_pool"]), max(500, cfg["n_test"])


def dataset(ctx: Context, coco, images: Path, categories=None):
    from activedet.data.dataset import DetectionDataset

    ds = ctx.params["dataset"]
    return DetectionDataset(coco, images, ds["input_size"], ds["keep_ratio"], True, categories)


# The 24 distinct variants of an image a derived pool cycles through: flipped upside down or not x flipped
# left-right or not x 6 channel orders (the first 12 keep the image upright).
_VARIANTS = [(vflip, flip, perm) for vflip in (False, True) for flip in (False, True)
             for perm in itertools.permutations(range(3))]


class DerivedPool:
    """A pool of ``n`` images derived from a smaller dataset (the DetectionDataset interface strategies use).

    Image ``i`` is base image ``i % len(base)`` under variant ``i // len(base)`` (vertical and horizontal
    flips and a channel permutation, boxes flipped with it), so pools of 32k images need only 2k generated
    scenes and the first 24 replicas are all distinct images. Ids are 1..n.
    """

    def __init__(self, base, n: int):
        if n > len(base) * len(_VARIANTS):
            raise ValueError(f"a derived pool of {n} images needs at least {-(-n // len(_VARIANTS))} base images")
        self.base, self.n = base, n
        self.categories = base.categories
        self.records = []
        for i in range(n):
            im, boxes, labels, difficult = base.records[i % len(base)]
            self.records.append(({**im, "id": i + 1}, boxes, labels, difficult))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        img, target = self.base[i % len(self.base)]
        vflip, flip, perm = _VARIANTS[i // len(self.base)]
        target = dict(target, image_id=i + 1)
        # an upside-down flip mirrors the boxes' y coordinates in the height, a left-right flip x in the width
        for flipped, dim, (lo, hi) in ((vflip, -2, (1, 3)), (flip, -1, (0, 2))):
            if flipped:
                size = img.shape[dim]
                img = img.flip(dim)
                b = target["boxes"].clone()
                b[:, [lo, hi]] = size - target["boxes"][:, [hi, lo]]
                target["boxes"] = b
        return img[list(perm)], target


def pool_of(ctx: Context, n: int):
    """A pool of ``n`` images: generated scenes up to the generated size, derived from them beyond it."""
    key = ("pool", min(n, base_sizes(ctx)[0]))
    if key not in ctx._cache:
        data = scenes(ctx, key[1])
        ctx._cache[key] = dataset(ctx, data["pool"], data["pool_images"])
    base = ctx._cache[key]
    return base if n == len(base) else DerivedPool(base, n)


def trained_model(ctx: Context, strategy_name: str, method: str):
    """(model in eval mode, where it came from) for scoring with ``strategy_name``.

    A finished experiment's checkpoint when there is one (its seed-0 cycle-0 model of that strategy, or
    the shared initial detector); else a detector trained here for a few iterations on the bench pool
    (``detector`` and ``miaod``); else the method's model as built, untrained (a trainer the bench cannot
    run), which still costs the same forward passes. Each model is made once per run.
    """
    from activedet.engine.train import load_checkpoint, load_model
    from activedet.models import build_model

    found = None
    if ctx.experiment is not None:
        for path in (ctx.experiment / "runs" / strategy_name / "seed0" / "cycle0" / "model.pt",
                     ctx.experiment / "initial" / "seed0" / "model.pt"):
            if path.is_file() and load_checkpoint(path).get("method", "detector") == method:
                found = path
                break
    key = ("model", str(found) if found else method)
    if key not in ctx._cache:
        if found is not None:
            ctx._cache[key] = (load_model(found, ctx.device)[0], f"checkpoint {found}")
        elif method in ("detector", "miaod"):
            ctx._cache[key] = _train_here(ctx, method)
        else:
            data = scenes(ctx, 1)
            model = build_model(ctx.params, len(data["pool"].categories), method).to(ctx.device).eval()
            ctx._cache[key] = (model, f"untrained {method} model (its trainer is not run by the bench)")
    return ctx._cache[key]


def _train_here(ctx: Context, method: str):
    from activedet.engine.miaod import train_miaod
    from activedet.engine.train import load_model, train_detector

    iterations = 2 if ctx.quick else 300
    p = bench_params(ctx, epochs=1e-6, min_iterations=iterations, max_iterations=iterations)
    if ctx.quick:
        p["train"]["batch_size"] = 4
    n = 16 if ctx.quick else 400
    data = scenes(ctx, n)
    ids = data["pool"].image_ids
    labeled = dataset(ctx, data["pool"].subset(ids[: n // 2]), data["pool_images"])
    path = ctx.scratch / f"model_{method}.pt"
    quiet = lambda m: None  # noqa: E731
    if method == "miaod":
        from activedet.data.coco import CocoData

        pool = data["pool"]
        unl = CocoData(pool.path, pool.subset(ids[n // 2:]).images, [], pool.categories, pool.info)
        train_miaod(p, labeled, dataset(ctx, unl, data["pool_images"], labeled.categories), path, 0, log=quiet)
    else:
        train_detector(p, labeled, path, 0, log=quiet)
    model, _ = load_model(path, ctx.device)
    return model, f"trained here for {iterations} iterations on {n // 2} images"
