"""Item 2: an MI-AOD training step vs a plain detector step, and MI-AOD's cycle time vs random's.

Steps are timed on the same labeled batch (and one unlabeled batch for the min/max steps) with the
run's detector; the mean MI-AOD step weights each phase by its share of the labeled iterations in
the schedule (``label x3, then twice [min, max, label x3]``). The same steps run on the paper's
detector (ResNet-50-FPN, four 4 x 256 towers, 9 anchors; ``configs/paper/voc_retinanet.yaml``) at 512 px:
on the tiny detector one head tower costs about as much as the whole backbone, so MI-AOD's two extra
towers weigh more there than at paper scale. The cycle time ratio comes from a
finished experiment (Snakemake benchmark files of the same seed and cycle, cycles >= 1 where both
strategies train their own model), else from a short cycle measured here.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import ROOT, Context
from .data import bench_params, dataset, scenes

SECTION = "2 miaod"


def bench_seconds(path: Path) -> float:
    """Wall seconds of a Snakemake benchmark file (column ``s``)."""
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0])


def cycle_seconds(exp: Path, strategy: str, seed: str, cycle: str) -> dict | None:
    """{'cycle': all benchmarked steps, 'train': train job, 'train_compute': in-process} or None if untrained."""
    d = exp / "runs" / strategy / seed / cycle
    if not (d / "benchmarks" / "train.tsv").is_file():
        return None
    out = {"cycle": sum(bench_seconds(p) for p in sorted((d / "benchmarks").glob("*.tsv"))),
           "train": bench_seconds(d / "benchmarks" / "train.tsv")}
    if (d / "train.json").is_file():
        import json

        out["train_compute"] = float(json.loads((d / "train.json").read_text())["seconds"])
    return out


def experiment_ratios(exp: Path, strategy: str = "miaod", reference: str = "random") -> dict[str, list[float]]:
    """Per (seed, cycle) ratios strategy / reference of cycle, train-job and training-compute seconds."""
    ratios: dict[str, list[float]] = {"cycle": [], "train": [], "train_compute": []}
    for seed_dir in sorted((exp / "runs" / strategy).glob("seed*")):
        for cycle_dir in sorted(seed_dir.glob("cycle*")):
            ours = cycle_seconds(exp, strategy, seed_dir.name, cycle_dir.name)
            ref = cycle_seconds(exp, reference, seed_dir.name, cycle_dir.name)
            if ours is None or ref is None:
                continue
            for key in ratios:
                if key in ours and key in ref and ref[key] > 0:
                    ratios[key].append(ours[key] / ref[key])
    return ratios


def step_functions(p: dict, images, targets, u_images, num_classes: int, device):
    """Plain and MI-AOD (label / min / max) training steps on the same batches; the schedule's weights.

    The steps are those of training: the max step runs the backbone, f_r and f_mil without autograd
    (``head_outputs(..., "max")``), and the weights come from the run's ``label_units``.
    """
    import torch

    from activedet.engine.miaod import (head_outputs, labeled_loss, phase_iterations, schedule, set_trainable,
                                        unlabeled_loss)
    from activedet.models import build_model

    cfg, mcfg = p["train"], p["strategies"]["miaod"]
    C = num_classes
    torch.manual_seed(0)
    plain = build_model(p, C).to(device).train()
    plain_opt = torch.optim.SGD([q for q in plain.parameters() if q.requires_grad], lr=1e-3, momentum=0.9)
    torch.manual_seed(0)
    mi = build_model(p, C, "miaod").to(device).train()
    frozen = {id(q) for q in mi.parameters() if not q.requires_grad}

    def clip_step(opt, params):
        if cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
        opt.step()

    def plain_step():
        out = plain(images, branches=("cls", "reg"))
        loss = plain.detection_loss(out, ("cls",), plain.anchors(images), targets, p["detector"])["loss"]
        plain_opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_step(plain_opt, plain_opt.param_groups[0]["params"])

    # One optimizer per phase, as in training; the steps interleave, so each re-applies its phase's freezing.
    trainables = {ph: set_trainable(mi, ph, frozen) for ph in ("label", "min", "max")}
    opts = {ph: torch.optim.SGD(trainables[ph], lr=1e-3, momentum=0.9) for ph in trainables}

    def mi_step(phase):
        def step():
            set_trainable(mi, phase, frozen)
            trainable, opt = trainables[phase], opts[phase]
            use_mil = mcfg["iur"] and mcfg["iur_set"] in ("labeled", "all") and phase != "max"
            loss = labeled_loss(mi, head_outputs(mi, images, phase, use_mil=use_mil), images, targets, p,
                                use_mil, mcfg["instance_loss"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_step(opt, trainable)
            if phase in ("min", "max"):
                loss = unlabeled_loss(mi, head_outputs(mi, u_images, phase, labeled=False), mcfg,
                                      maximize=phase == "max")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                clip_step(opt, trainable)
        return step

    phases = schedule(mcfg)
    counts = phase_iterations(phases, 1300, mcfg["label_units"])
    weights = {ph: sum(n for q, n in zip(phases, counts) if q == ph) / sum(counts) for ph in set(phases)}
    steps = {"plain": plain_step, **{ph: mi_step(ph) for ph in ("label", "min", "max")}}
    return steps, weights


def run_batches(ctx: Context, batch: int, size: int | None = None):
    """A labeled and an unlabeled batch of digit scenes, resized to ``size`` pixels (boxes scaled with them)."""
    import torch.nn.functional as F

    from activedet.engine.train import load_batch

    data = scenes(ctx, 2 * batch)
    ds = dataset(ctx, data["pool"], data["pool_images"])
    images, targets = load_batch(ds, list(range(batch)), ctx.device)
    u_images, _ = load_batch(ds, list(range(batch, 2 * batch)), ctx.device)
    if size is not None:
        scale = size / images.shape[-1]
        images, u_images = (F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
                            for x in (images, u_images))
        targets = [{**t, "boxes": t["boxes"] * scale} for t in targets]
    return images, targets, u_images, len(ds.categories)


def paper_detector_params(ctx: Context) -> dict:
    """The run's params with the detector (and gradient clipping) of ``configs/paper/voc_retinanet.yaml``."""
    import yaml

    from activedet import params as P

    paper = yaml.safe_load((ROOT / "configs" / "paper" / "voc_retinanet.yaml").read_text())
    p = bench_params(ctx)
    # timing only: random initialisation stands in for the configuration's ImageNet weights file
    p["detector"] = {**p["detector"], **paper["detector"], "backbone_weights": None}
    p["train"]["grad_clip"] = paper["train"]["grad_clip"]
    return P.validate(p, "configs/paper/voc_retinanet.yaml detector")


def add_step_rows(ctx: Context, t: dict, weights: dict, what: str) -> None:
    mean_mi = [sum(weights[ph] * t[ph][r] for ph in weights) for r in range(len(t["plain"]))]
    for ph in ("label", "min", "max"):
        ctx.add(SECTION, f"MI-AOD {ph} step ({what})", [1e3 * s for s in t[ph]], "ms",
                reference="plain detector step", reference_values=[1e3 * s for s in t["plain"]],
                ratio_values=[a / b for a, b in zip(t[ph], t["plain"])],
                note="min/max: labeled step + unlabeled step")
    shares = ", ".join(f"{ph} {weights[ph]:.2f}" for ph in sorted(weights))
    ctx.add(SECTION, f"MI-AOD step, schedule-weighted mean ({what})", [1e3 * s for s in mean_mi], "ms",
            reference="plain detector step", reference_values=[1e3 * s for s in t["plain"]],
            ratio_values=[a / b for a, b in zip(mean_mi, t["plain"])], note=f"phase shares: {shares}")


def measured_cycle(ctx: Context) -> dict[str, list[float]]:
    """Seconds of one short random cycle and one MI-AOD cycle (train, score the pool, select), paired."""
    import numpy as np

    from activedet.data.coco import CocoData
    from activedet.engine.miaod import train_miaod
    from activedet.engine.train import load_model, train_detector
    from activedet.strategies import build_strategy

    n_pool, n_labeled, iterations = (24, 8, 2) if ctx.quick else (600, 100, 100)
    p = bench_params(ctx, epochs=1e-6, min_iterations=iterations, max_iterations=iterations)
    data = scenes(ctx, n_pool)
    pool_coco, images = data["pool"], data["pool_images"]
    ids = pool_coco.image_ids
    labeled = dataset(ctx, pool_coco.subset(ids[:n_labeled]), images)
    unl_ids = ids[n_labeled:][: round(n_labeled * p["strategies"]["miaod"]["unlabeled_ratio"])]
    unlabeled = dataset(ctx, CocoData(pool_coco.path, pool_coco.subset(unl_ids).images, [], pool_coco.categories,
                                      pool_coco.info), images, labeled.categories)
    pool = dataset(ctx, pool_coco, images, labeled.categories)
    quiet = lambda m: None  # noqa: E731
    budget = max(1, n_labeled // 2)

    def cycle(name):
        def run():
            path = ctx.scratch / f"cycle_{name}.pt"
            if name == "miaod":
                train_miaod(p, labeled, unlabeled, path, 0, log=quiet)
            else:
                train_detector(p, labeled, path, 0, log=quiet)
            model, _ = load_model(path, ctx.device)
            strategy = build_strategy(name, p)
            scores = strategy.score(model, pool, set(ids[:n_labeled]), ctx.device, 64)
            strategy.select(scores, budget, np.random.default_rng(0))
        return run

    return ctx.paired({"random": cycle("random"), "miaod": cycle("miaod")}, warmup=0)


def run(ctx: Context) -> None:
    p = bench_params(ctx)
    batch = 2 if ctx.quick else p["train"]["batch_size"]
    steps, weights = step_functions(p, *run_batches(ctx, batch), ctx.device)
    add_step_rows(ctx, ctx.paired(steps), weights, f"batch {batch}")
    # The paper's detector: its backbone dominates a step, so the two extra towers cost relatively less.
    pp = paper_detector_params(ctx)
    batch, size = (1, 128) if ctx.quick else (2, 512)
    steps, weights = step_functions(pp, *run_batches(ctx, batch, size), ctx.device)
    add_step_rows(ctx, ctx.paired(steps), weights, f"ResNet-50-FPN, batch {batch} at {size} px")

    ratios = experiment_ratios(ctx.experiment) if ctx.experiment is not None else {"cycle": []}
    if ratios["cycle"]:
        where = f"{ctx.experiment}, {len(ratios['cycle'])} (seed, cycle) pairs, cycles >= 1"
        ctx.add(SECTION, "MI-AOD cycle time / random cycle time", ratios["cycle"], "x", goal="<= 1.25",
                note=f"all Snakemake jobs of a cycle (train, evaluate, score, select, merge); {where}")
        ctx.add(SECTION, "MI-AOD training job / random training job", ratios["train"], "x", note=where)
        if ratios["train_compute"]:
            ctx.add(SECTION, "MI-AOD training compute / random training compute", ratios["train_compute"], "x",
                    note=f"in-process seconds of train.json; {where}")
    else:
        t = measured_cycle(ctx)
        ctx.add(SECTION, "MI-AOD cycle time / random cycle time", [a / b for a, b in zip(t["miaod"], t["random"])],
                "x", goal="<= 1.25", note="short cycle measured here (no finished experiment): train, score, select")
    paper = pd.read_csv(ROOT / "src" / "activedet" / "paper" / "numbers" / "miaod_table5_time.csv", comment="#")
    paper = paper.set_index("method")
    ctx.add(SECTION, "paper (MI-AOD Table 5): MI-AOD cycle time / random", list(paper.loc["mi_aod"] / paper.loc["random"]),
            "x", note="one TITAN V, PASCAL VOC, 5% to 20% labeled; median over the 7 cycles")
