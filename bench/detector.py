"""Item 1: detector training throughput vs torchvision's RetinaNet, and as a fraction of the machine's limit.

Both detectors get the same backbone (ours, weights identical at the start), the same 4 x 64 head
without normalisation (torchvision's ``RetinaNetHead``), the same anchors, 64 px images and batch.
The limit is the faster of a dense matmul and a representative 3x3 convolution measured in the same
run; the fraction is training FLOPs per image (``torch.utils.flop_counter``) x images/s / that limit.
Every counted FLOP is a convolution's, so the fraction cannot exceed what the step's convolutions alone reach:
FLOPs per step / their self CPU seconds (``torch.profiler``) / the limit, the row "with the convolutions
alone". That row bounds what removing every other op (norms, activations, loss, optimizer) could give.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from .common import Context
from .miaod_profile import convolution_profile

SECTION = "1 detector"


def dense_limit(ctx: Context) -> tuple[list[float], list[float]]:
    """FLOP/s of a square matmul and of a 3x3 convolution, per repeat."""
    dev = ctx.device
    n = 512 if ctx.quick else (8192 if dev.type == "cuda" else 1024)
    batch, ch, px = (4, 64, 32) if ctx.quick else ((256, 64, 64) if dev.type == "cuda" else (32, 64, 32))
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    conv = torch.nn.Conv2d(ch, ch, 3, padding=1).to(dev)
    x = torch.randn(batch, ch, px, px, device=dev)
    calls = 2 if ctx.quick else 10
    with torch.no_grad():
        times = ctx.paired({"mm": lambda: [a @ b for _ in range(calls)], "conv": lambda: [conv(x) for _ in range(calls)]})
    mm_flops = calls * 2 * n ** 3
    conv_flops = calls * 2 * batch * ch * ch * 9 * px * px
    return [mm_flops / s for s in times["mm"]], [conv_flops / s for s in times["conv"]]


def synthetic_batch(batch: int, num_classes: int, device: torch.device, size: int = 64):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=g).to(device)
    targets = []
    for _ in range(batch):
        xy = torch.rand(2, 2, generator=g) * (size * 0.45)
        targets.append({"boxes": torch.cat([xy, xy + 12 + torch.rand(2, 2, generator=g) * 16], 1).to(device),
                        "labels": torch.randint(0, num_classes, (2,), generator=g).to(device)})
    return images, targets


def training_flops(step, batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / batch


def our_step(model, images, targets, det):
    from activedet.models.losses import detection_loss

    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        out = model(images, branches=("cls", "reg"))
        loss = detection_loss([out["cls"]], out["reg"], model.anchors(images), targets, det, model.box_coder)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def run(ctx: Context) -> None:
    from torchvision.models.detection import RetinaNet as TVRetinaNet

    from activedet import params as P
    from activedet.models import build_model
    from activedet.models.losses import build_targets, focal_loss_per_image

    dev = ctx.device
    batch, iters, C = (2, 1, 10) if ctx.quick else (16, 30, 10)
    images, targets = synthetic_batch(batch, C, dev)
    tv_head = {"fpn_channels": 64, "head_convs": 4, "head_channels": 64, "head_norm": "none"}
    params = P.load({"detector": {**ctx.params["detector"], **tv_head}})
    det = params["detector"]
    torch.manual_seed(0)
    ours = build_model(params, C).to(dev).train()

    class Features(torch.nn.Module):  # torchvision wants an OrderedDict of feature maps
        def __init__(self, backbone):
            super().__init__()
            self.body, self.out_channels = backbone, backbone.out_channels

        def forward(self, x):
            return OrderedDict((str(i), f) for i, f in enumerate(self.body(x)))

    torch.manual_seed(0)
    size = images.shape[-1]
    tv = TVRetinaNet(Features(build_model(params, C).backbone), C, anchor_generator=ours.anchor_generator,
                     min_size=size, max_size=size, image_mean=[0.0] * 3, image_std=[1.0] * 3).to(dev).train()
    tv_opt = torch.optim.SGD(tv.parameters(), lr=1e-3, momentum=0.9)
    tv_images = list(images)

    def tv_step():
        loss = sum(tv(tv_images, targets).values())
        tv_opt.zero_grad(set_to_none=True)
        loss.backward()
        tv_opt.step()

    # The default detector of params.yaml (its own head: GroupNorm towers), ours only.
    torch.manual_seed(0)
    default = build_model(ctx.params, C).to(dev).train()
    steps = {"ours": our_step(ours, images, targets, det), "torchvision": tv_step,
             "default": our_step(default, images, targets, ctx.params["detector"])}
    for step in steps.values():  # warm-up: anchors cached, allocator settled
        for _ in range(1 if ctx.quick else 3):
            step()
    flops = {name: training_flops(step, batch) for name, step in steps.items()}
    seconds = ctx.paired({name: (lambda s=step: [s() for _ in range(iters)]) for name, step in steps.items()}, warmup=0)
    rate = {name: [iters * batch / s for s in v] for name, v in seconds.items()}
    mm, conv = dense_limit(ctx)
    limit = max(sorted(mm)[len(mm) // 2], sorted(conv)[len(conv) // 2])
    what = f"tiny backbone, 4x64 head, {images.shape[-1]} px, batch {batch}"
    ctx.add(SECTION, "dense matmul", [x / 1e9 for x in mm], "GFLOP/s", note="fp32, one square matmul")
    ctx.add(SECTION, "dense 3x3 convolution", [x / 1e9 for x in conv], "GFLOP/s", note="fp32, 64 channels")
    ctx.add(SECTION, f"training throughput ({what})", rate["ours"], "images/s",
            reference="torchvision RetinaNet", reference_values=rate["torchvision"],
            ratio_values=[a / b for a, b in zip(rate["ours"], rate["torchvision"])],
            note="ratio = ours / torchvision, paired repeats")
    # Goals: 0.8 for the torchvision-style head (the first bench issue), 0.6 for the default detector (issue 20).
    goals = {"ours": ">= 0.8", "torchvision": ">= 0.8", "default": ">= 0.6"}
    for name, label in (("ours", f"ours ({what})"), ("torchvision", f"torchvision RetinaNet ({what})"),
                        ("default", f"default detector of params.yaml ({images.shape[-1]} px, batch {batch})")):
        ctx.add(SECTION, f"training FLOPs per image, {label}", flops[name] / 1e6, "MFLOP",
                note="forward + backward, torch.utils.flop_counter")
        ctx.add(SECTION, f"fraction of the machine limit, {label}", [flops[name] * r / 1e9 for r in rate[name]],
                "GFLOP/s", reference="limit: max(matmul, conv)", reference_values=limit / 1e9, goal=goals[name],
                note="ratio = training FLOPs x images/s / limit")
        if name == "default":
            ctx.add(SECTION, f"training throughput, {label}", rate[name], "images/s")
    prof = convolution_profile(steps["default"], 1 if ctx.quick else ctx.repeats)
    conv_s, total_s = prof["conv_ms"] / 1e3, (prof["conv_ms"] + prof["other_ms"]) / 1e3
    label = f"default detector of params.yaml ({images.shape[-1]} px, batch {batch})"
    ctx.add(SECTION, f"convolutions' share of a training step, {label}", conv_s * 1e3, "ms",
            reference="all ops of the step (self CPU, torch.profiler)", reference_values=total_s * 1e3,
            note="ratio = the convolutions' share")
    # The classification loss alone: torchvision's sigmoid focal loss over every anchor and class of the batch,
    # forward + backward on the default detector's own logits (one op of the remainder the goal leaves room for).
    with torch.no_grad():
        logits = default(images, branches=("cls",))["cls"]
    logits.requires_grad_(True)
    default_det = ctx.params["detector"]  # `det` above is the 4 x 64 head's
    t = build_targets(default.anchors(images), targets, C, default_det["fg_iou_threshold"],
                      default_det["bg_iou_threshold"])

    def focal():
        focal_loss_per_image(logits, t, default_det["focal_alpha"], default_det["focal_gamma"]).sum().backward()
        logits.grad = None

    focal_s = ctx.paired({"focal": focal})["focal"]
    ctx.add(SECTION, f"focal loss forward + backward, {label}", [x * 1e3 for x in focal_s], "ms",
            reference="all ops of the step (self CPU, torch.profiler)", reference_values=total_s * 1e3,
            note=f"logits {tuple(logits.shape)}; ratio = its share of the step")
    ctx.add(SECTION, f"fraction of the machine limit with the convolutions alone, {label}",
            flops["default"] * batch / conv_s / 1e9, "GFLOP/s", reference="limit: max(matmul, conv)",
            reference_values=limit / 1e9, goal=goals["default"],
            note="ratio = training FLOPs / the convolutions' self CPU seconds / limit: the fraction if every "
                 "other op cost nothing")
