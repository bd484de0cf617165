"""MGRAL's semi-supervised proxy detector: how much would a candidate batch help, without its labels?

The proxy starts from the cycle's detector (warm start, so a record costs seconds) and trains
``proxy_iterations`` SGD steps on the labeled training part plus the candidate batch, whose
targets are the cycle detector's own detections scoring at least ``pseudo_threshold`` (hard
pseudo labels from a frozen teacher, self-training as in STAC); both get the training recipe's
augmentation, so the student also learns to agree with the teacher under it. Every proxy run of a
cycle uses the same seed (batch order, augmentation): runs differ by their candidate batch alone.
The proxy's mAP@0.5
(VOC07 11-point, the learning-curve metric) is measured on the validation part of the labeled set:
``val_fraction`` of the labeled images, fixed by the seed. The test split is never read.

The cycle's detector was trained on the whole labeled set, validation part included, so absolute
proxy mAPs are optimistic; every candidate batch is rated under the same bias.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from ..data.coco import CocoData
from ..io import InputError


def validation_split(labeled_ids: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(training ids, validation ids) of a labeled set: ``round(fraction * n)`` images (at least 1, and at
    least 1 left for training) drawn by the seed; both sorted."""
    ids = sorted(int(i) for i in labeled_ids)
    if len(ids) < 2:
        raise InputError(f"MGRAL's proxy needs at least 2 labeled images (training and validation), got {len(ids)}")
    n_val = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    val = sorted(int(i) for i in np.random.default_rng([seed, 7_919]).choice(ids, n_val, replace=False))
    chosen = set(val)
    return [i for i in ids if i not in chosen], val


def candidate_batch(unlabeled_ids: list[int], budget: int, seed: int, cycle: int, record: int) -> list[int]:
    """The random candidate batch of a record: ``budget`` distinct unlabeled ids, sorted."""
    ids = sorted(int(i) for i in unlabeled_ids)
    if budget > len(ids):
        raise InputError(f"active.budget ({budget}) is larger than the unlabeled pool ({len(ids)} images left)")
    rng = np.random.default_rng([seed, cycle, record])
    return sorted(int(i) for i in rng.choice(ids, budget, replace=False))


class ProxyRunner:
    """Loads the teacher and the labeled data once; :meth:`run` rates one candidate batch."""

    def __init__(self, params: dict, options: dict, model_path: str | Path, labeled: CocoData, pool: CocoData,
                 images_dir: str | Path, seed: int, model=None, ckpt: dict | None = None):
        from ..checkpoint import load_model
        from ..data.dataset import DetectionDataset
        from ..device import resolve_device

        self.params, self.options, self.seed = params, options, seed
        self.device = resolve_device(params["device"])
        if model is None:
            from ..checkpoint import check_trainer

            model, ckpt = load_model(model_path, self.device)
            check_trainer(ckpt, model_path, "mgral", "detector")  # the plain detector of the cycle, not MI-AOD's
        self.teacher, self.ckpt = model.eval(), ckpt
        self.categories = ckpt["categories"]
        self.pool, self.images_dir = pool, Path(images_dir)
        ds = params["dataset"]
        self._dataset = lambda coco: DetectionDataset(coco, images_dir, ds["input_size"], ds["keep_ratio"],
                                                      True, self.categories)
        train_ids, val_ids = validation_split(labeled.image_ids, options["val_fraction"], seed)
        self.train_ids, self.val_ids = train_ids, val_ids
        self.val = labeled.subset(val_ids)
        self.train_ds = self._dataset(labeled.subset(train_ids))
        self.val_ds = self._dataset(self.val)
        self._teacher_map: float | None = None

    def evaluate(self, model) -> float:
        """mAP@0.5 (VOC07 11-point) of ``model`` on the validation part of the labeled set."""
        import torch

        from ..engine.predict import predict
        from ..evaluation import voc_map

        with torch.no_grad():
            dets = predict(model, self.val_ds, self.device, 64)
        return float(voc_map(self.val.to_dict(), dets, iou_threshold=0.5, use_07_metric=True)["map"])

    @property
    def teacher_map(self) -> float:
        if self._teacher_map is None:
            self._teacher_map = self.evaluate(self.teacher)
        return self._teacher_map

    def pseudo_labels(self, dataset) -> list[dict]:
        """The teacher's detections scoring at least ``pseudo_threshold``, per image (input pixels)."""
        import torch

        from ..engine.predict import run_model

        thr = self.options["pseudo_threshold"]
        out: list[dict] = []

        def on_batch(images, targets, outputs, dets):
            for d in dets:
                keep = d["scores"] >= thr
                out.append({"boxes": d["boxes"][keep].cpu(), "labels": d["labels"][keep].cpu()})

        with torch.no_grad():
            run_model(self.teacher, dataset, self.device, 64, on_batch, branches=("cls", "reg"))
        return out

    def run(self, candidate_ids: list[int], seed: int) -> dict:
        """Train the proxy on the labeled training part + the candidate batch (pseudo labels); rate it."""
        import torch

        from ..data.dataset import augment_batch, collate
        from ..engine.train import batch_indices, make_optimizer

        teacher_map = self.teacher_map  # once per runner, outside the record's time
        t0 = time.perf_counter()
        known = set(self.pool.image_ids)
        missing = [i for i in candidate_ids if i not in known]
        if missing:
            raise InputError(f"{self.pool.path}: candidate images {missing[:10]} are not in the pool")
        overlap = sorted(set(candidate_ids) & (set(self.train_ids) | set(self.val_ids)))
        if overlap:
            raise InputError(f"candidate batch contains labeled images {overlap[:10]}")
        # The candidates enter without their annotations: only the teacher's pseudo labels are used.
        chosen = self.pool.subset(candidate_ids)
        unlabeled = CocoData(self.pool.path, chosen.images, [], self.pool.categories, self.pool.info)
        cand_ds = self._dataset(unlabeled)
        pseudo = self.pseudo_labels(cand_ds)
        samples = []
        for i in range(len(self.train_ds)):
            img, t = self.train_ds[i]
            keep = ~t["difficult"]
            samples.append((img, {"boxes": t["boxes"][keep], "labels": t["labels"][keep]}))
        samples += [(cand_ds[i][0], pseudo[i]) for i in range(len(cand_ds))]

        cfg = self.params["train"]
        iters = self.options["proxy_iterations"]
        recipe = {**cfg, "lr_drops": [], "warmup_iterations": min(cfg["warmup_iterations"], max(1, iters // 10))}
        torch.manual_seed(seed)
        student = copy.deepcopy(self.teacher).train()
        opt, sched = make_optimizer(student.parameters(), recipe, iters, lr=self.options["proxy_lr"])
        batches = batch_indices(len(samples), cfg["batch_size"], seed)
        det = self.params["detector"]
        for it in range(iters):
            images, targets = collate([(samples[j][0], dict(samples[j][1])) for j in next(batches)])
            images = images.to(self.device)
            targets = [{"boxes": t["boxes"].to(self.device), "labels": t["labels"].to(self.device)} for t in targets]
            if cfg["augment"]["enabled"]:
                augment_batch(images, targets, torch.Generator().manual_seed(seed * 7919 + it), cfg["augment"])
            out = student(images, branches=("cls", "reg"))
            # the plain trainer's loss call: RetinaNet's focal loss or SSD's MultiBox loss
            loss = student.detection_loss(out, ("cls",), student.anchors(images), targets, det)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(student.parameters(), cfg["grad_clip"])
            opt.step()
            sched.step()
            if not np.isfinite(float(loss.detach())):
                raise FloatingPointError(f"proxy training diverged at iteration {it}; lower strategies.mgral.proxy_lr")
        map50 = self.evaluate(student.eval())
        return {"image_ids": sorted(int(i) for i in candidate_ids), "map50": map50,
                "teacher_map50": teacher_map, "seconds": time.perf_counter() - t0, "iterations": iters,
                "n_pseudo_boxes": int(sum(len(p["labels"]) for p in pseudo)), "n_train": len(self.train_ds),
                "n_val": len(self.val_ds), "proxy_seed": seed}
