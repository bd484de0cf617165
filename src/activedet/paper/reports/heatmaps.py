"""MI-AOD Fig. 6: heatmaps of instance uncertainty after IUL and after IUR, and of the MIL score.

Per anchor of an MI-AOD model (``models/miaod.py``):

* IUL - the learned instance uncertainty, Eq. 3: ``mean_c |σ(f1) − σ(f2)|``;
* IUR - the re-weighted uncertainty, the summand of Eq. 7: ``mean_c |σ(f1) − σ(f2)| · ŷ^cls``;
* ŷ^cls - the MIL image-classification score of the instance (Eq. 5 as coded), its largest class.

As in the paper, a heatmap sums the scores of all instances: every anchor adds its value to the
image pixels nearest to its centre on its FPN level (each level's grid of anchor centres tiles
the image), and the levels add up.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ...io import InputError
from .common import markdown_table, pyplot, save_figure, write_csv, write_markdown

MAPS = ("iul", "iur", "ycls")
MAP_TITLES = {"iul": "IUL: instance uncertainty", "iur": "IUR: re-weighted uncertainty",
              "ycls": "ŷcls: MIL image-class score"}


def _nearest(coords: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted ``centers`` for every coordinate (ties go to the lower centre)."""
    midpoints = (centers[1:] + centers[:-1]) / 2
    return torch.bucketize(coords, midpoints, right=False)


def anchor_heatmap(values: torch.Tensor, level_shapes: list[tuple[int, int]], level_sizes: list[int],
                   centers: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Heatmap [H, W] of per-anchor ``values`` [A] (torchvision's anchor order: level, row, column, anchor).

    ``level_shapes`` are the (rows, columns) of each level's grid, ``level_sizes`` its number of anchors
    (a multiple of the locations: SSD levels differ in anchors per location), ``centers`` [A, 2] the
    anchors' (x, y) centres in input pixels. At each location the anchors' values add up; each pixel
    takes, per level, the sum of the location whose centre is nearest.
    """
    if sum(level_sizes) != len(values) or len(level_sizes) != len(level_shapes):
        raise ValueError(f"{len(values)} anchor values do not fill levels of {level_sizes} anchors")
    H, W = image_size
    heat = values.new_zeros(H, W)
    py = torch.arange(H, dtype=centers.dtype, device=centers.device) + 0.5  # pixel centres
    px = torch.arange(W, dtype=centers.dtype, device=centers.device) + 0.5
    start = 0
    for (h, w), n in zip(level_shapes, level_sizes):  # a handful of levels; everything inside is vectorised
        per_location, rest = divmod(n, h * w)
        if rest:
            raise ValueError(f"a level of {n} anchors is not a whole number per location of its {h}x{w} grid")
        per_loc = values[start:start + n].view(h, w, per_location).sum(dim=-1)
        c = centers[start:start + n].view(h, w, per_location, 2).mean(dim=2)
        iy, ix = _nearest(py, c[:, 0, 1]), _nearest(px, c[0, :, 0])
        heat += per_loc[iy][:, ix]
        start += n
    return heat


@torch.no_grad()
def instance_maps(model, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], list[tuple[int, int]], list[int]]:
    """Per-anchor IUL, IUR and ŷcls [B, A] of an MI-AOD model, its level shapes and anchors per level."""
    from ...models.miaod import instance_uncertainty, mil_instance_scores

    out = model(images, branches=("cls", "cls2", "mil"), return_features=True)
    f1, f2 = out["cls"], out["cls2"]
    y_cls = mil_instance_scores(f1, f2, out["mil"], out["level_sizes"])
    delta = (torch.sigmoid(f1) - torch.sigmoid(f2)).abs()
    maps = {"iul": instance_uncertainty(f1, f2, squared=False), "iur": (delta * y_cls).mean(dim=-1),
            "ycls": y_cls.amax(dim=-1)}
    return maps, [tuple(f.shape[-2:]) for f in out["features"]], list(out["level_sizes"])


def image_heatmaps(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Heatmaps [B, H, W] of every map for a batch of images."""
    maps, shapes, sizes = instance_maps(model, images)
    anchors = model.anchors(images)
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    size = tuple(images.shape[-2:])
    return {k: torch.stack([anchor_heatmap(v[b], shapes, sizes, centers, size)
                            for b in range(len(images))]) for k, v in maps.items()}


def share_in_boxes(heat: torch.Tensor, boxes: torch.Tensor) -> float:
    """Fraction of a heatmap's mass on pixels inside any of the boxes (xyxy, input pixels); NaN without boxes."""
    if len(boxes) == 0 or float(heat.sum()) <= 0:
        return float("nan")
    H, W = heat.shape
    y = torch.arange(H, dtype=boxes.dtype) + 0.5
    x = torch.arange(W, dtype=boxes.dtype) + 0.5
    inside = ((x[None, None, :] >= boxes[:, 0, None, None]) & (x[None, None, :] <= boxes[:, 2, None, None])
              & (y[None, :, None] >= boxes[:, 1, None, None]) & (y[None, :, None] <= boxes[:, 3, None, None]))
    return float(heat[inside.any(dim=0)].sum() / heat.sum())


def _or_unknown(value):
    return "?" if value is None else value


def write(model_path, pool_path, images_dir, selected_path, out_dir, n_images: int, device: str = "auto"
          ) -> list[Path]:
    """Fig. 6 for the first ``n_images`` of a cycle's selection (unlabeled pool images, in rank order)."""
    from ...checkpoint import load_model
    from ...cycle import Selection
    from ...data.coco import load_coco
    from ...data.dataset import DetectionDataset, collate
    from ...device import resolve_device

    dev = resolve_device(device)
    model, ckpt = load_model(model_path, dev)
    if ckpt.get("method") != "miaod":
        raise InputError(f"{model_path}: Fig. 6 needs an MI-AOD model (trained by train-miaod), "
                         f"got one trained by '{ckpt.get('method', 'detector')}'")
    sel = Selection.read(selected_path)
    ranked = list(zip(sel.image_ids, sel.scores))[:n_images]
    if not ranked:
        raise InputError(f"{selected_path}: no selected images to show")
    ds_cfg = ckpt["params"]["dataset"]
    pool = load_coco(pool_path, ds_cfg["on_box_outside"]).subset([i for i, _ in ranked])
    data = DetectionDataset(pool, images_dir, ds_cfg["input_size"], ds_cfg["keep_ratio"], False, ckpt["categories"])
    images, targets = collate([data[i] for i in range(len(data))])
    heat = {k: v.cpu() for k, v in image_heatmaps(model, images.to(dev)).items()}
    names = [c["name"] for c in ckpt["categories"]]
    rows = []
    for b, (t, (image_id, score)) in enumerate(zip(targets, ranked)):
        row = {"rank": b + 1, "image_id": image_id, "file_name": data.records[b][0]["file_name"],
               "selection score": score, "objects": len(t["boxes"]),
               "box area share": share_in_boxes(torch.ones(images.shape[-2:], dtype=torch.float64),
                                                t["boxes"].double())}
        for k in MAPS:
            row[f"{k} sum"] = float(heat[k][b].sum())
            row[f"{k} share in boxes"] = share_in_boxes(heat[k][b], t["boxes"].double())
        rows.append(row)
    table = pd.DataFrame(rows)
    out_dir = Path(out_dir)
    _plot(images.cpu(), targets, heat, names, out_dir / "miaod_fig6.png",
          f"MI-AOD Fig. 6: {sel.strategy}, seed {_or_unknown(sel.seed)}, cycle {_or_unknown(sel.cycle)} "
          f"model, its top-{len(ranked)} selected (unlabeled) images")
    shares = {k: table[f"{k} share in boxes"].mean() for k in MAPS}
    caption = ("The paper shows example heatmaps without numbers. Ours for the first selected images of "
               f"{selected_path}: heatmap mass (sum over anchors) and the share of it on ground-truth boxes "
               "(above the box area share = the map highlights objects more than background; the paper's claim is "
               "that IUR "
               "and ŷcls suppress background instances that IUL highlights). Mean share in boxes: "
               + ", ".join(f"{k} {v:.2f}" for k, v in shares.items())
               + f" (box area {table['box area share'].mean():.2f}).")
    fmt = table.copy()
    for c in fmt.columns:
        if c.endswith(("sum", "share in boxes", "score", "area share")):
            fmt[c] = fmt[c].map(lambda v: "" if v is None or v != v else f"{v:.4g}")
    return [write_csv(table, out_dir / "miaod_fig6.csv"),
            write_markdown(markdown_table(fmt, "MI-AOD Fig. 6: instance uncertainty and MIL score heatmaps",
                                          caption), out_dir / "miaod_fig6.md"),
            out_dir / "miaod_fig6.png"]


def _plot(images, targets, heat, names, path, title) -> None:
    plt = pyplot()
    from matplotlib.patches import Rectangle

    n = len(images)
    fig, axes = plt.subplots(n, 1 + len(MAPS), figsize=(2.3 * (1 + len(MAPS)), 2.3 * n + 0.6), dpi=110,
                             squeeze=False)
    for b in range(n):
        img = images[b].permute(1, 2, 0).numpy()
        for k, ax in enumerate(axes[b]):
            ax.imshow(img, interpolation="nearest")
            if k == 0:
                for box, lab in zip(targets[b]["boxes"].tolist(), targets[b]["labels"].tolist()):
                    ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                           ec="#00ff66", lw=1.2))
                    ax.text(box[0], box[1], names[lab], color="black", fontsize=6,
                            bbox={"fc": "#00ff66", "pad": 0.5, "lw": 0})
                ax.set_ylabel(f"#{b + 1} id {targets[b]['image_id']}", fontsize=7)
            else:
                h = heat[MAPS[k - 1]][b].numpy()
                # Each map on its own scale: the paper's heatmaps show where, not how much.
                ax.imshow(h / h.max() if h.max() > 0 else h, cmap="jet", alpha=0.55, vmin=0, vmax=1,
                          interpolation="bilinear")
            ax.set_xticks([])
            ax.set_yticks([])
            if b == 0:
                ax.set_title("unlabeled image + truth" if k == 0 else MAP_TITLES[MAPS[k - 1]], fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
