"""MGRAL Fig. 4: the first cycle's selected images of every strategy, side by side.

One row per strategy: its top-ranked images of cycle 0 with their ground-truth boxes (the labels
the oracle adds). The table says what the paper's figure argues about - how many objects the
selected images hold, how many are empty, how many classes they cover - over the whole batch,
not only the images shown.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from ...cycle import Selection
from ...io import InputError
from .common import (
    label,
    markdown_table,
    mean_std,
    mean_std_cell,
    pyplot,
    save_figure,
    write_csv,
    write_markdown,
)


def _selected(path) -> tuple[dict, list[int]]:
    sel = Selection.read(path)
    return sel.to_dict(), sel.image_ids


def batch_stats(ids: list[int], pool) -> dict:
    """Objects per image, empty images, classes covered and the class entropy (bits) of a selection."""
    by_image = pool.annotations_by_image()
    missing = [i for i in ids if i not in by_image]
    if missing:
        raise InputError(f"{pool.path}: selected image ids not in the pool: {missing[:10]}")
    counts = [len(by_image[i]) for i in ids]
    classes = Counter(a["category_id"] for i in ids for a in by_image[i])
    p = np.array(list(classes.values()), dtype=float)
    p = p / p.sum() if p.sum() else p
    return {"images": len(ids), "objects per image": float(np.mean(counts)) if counts else float("nan"),
            "empty images": sum(c == 0 for c in counts), "classes covered": len(classes),
            "class entropy (bits)": float(-(p * np.log2(p)).sum()) if len(p) else 0.0}


def write(selected_files: list[str | Path], pool_path, images_dir, out_dir, n_images: int,
          on_box_outside: str = "clip") -> list[Path]:
    """``selected_files``: cycle-0 selections, one or more seeds per strategy; the first of each is drawn."""
    from ...data.coco import check_file_name, load_coco
    from ...data.dataset import read_image

    pool = load_coco(pool_path, on_box_outside)
    names = {c["id"]: c["name"] for c in pool.categories}
    by_strategy: dict[str, list[tuple[dict, list[int]]]] = {}
    for f in selected_files:
        sel, ids = _selected(f)
        by_strategy.setdefault(str(sel["strategy"]), []).append((sel, ids))
    if not by_strategy:
        raise InputError("paper-fig4: no selections given")
    rows, shown = [], []
    by_image = pool.annotations_by_image()
    by_id = {im["id"]: im for im in pool.images}
    for strategy, sels in by_strategy.items():
        stats = [batch_stats(ids, pool) for _, ids in sels]
        row = {"strategy": strategy, "n_seeds": len(sels), "images per batch": stats[0]["images"]}
        for k in ("objects per image", "empty images", "classes covered", "class entropy (bits)"):
            m, s, _ = mean_std([st[k] for st in stats])
            row[k] = mean_std_cell(m, s, 2)
        rows.append(row)
        sel, ids = sels[0]
        for rank, i in enumerate(ids[:n_images], 1):
            shown.append({"strategy": strategy, "seed": sel.get("seed"), "rank": rank, "image_id": i,
                          "file_name": by_id[i]["file_name"], "objects": len(by_image[i]),
                          "classes": " ".join(sorted({names[a["category_id"]] for a in by_image[i]}))})
    table, shown_df = pd.DataFrame(rows), pd.DataFrame(shown)

    plt = pyplot()
    from matplotlib.patches import Rectangle

    strategies = list(by_strategy)
    fig, axes = plt.subplots(len(strategies), n_images, figsize=(1.5 * n_images + 0.8, 1.6 * len(strategies) + 0.5),
                             dpi=110, squeeze=False)
    for r, strategy in enumerate(strategies):
        sub = shown_df[shown_df["strategy"] == strategy]
        for k, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= len(sub):
                ax.axis("off")
                continue
            item = sub.iloc[k]
            where = f"{pool_path}: image id {item['image_id']}"
            ax.imshow(np.asarray(read_image(check_file_name(images_dir, item["file_name"], where), where)),
                      interpolation="nearest")
            for a in by_image[int(item["image_id"])]:
                x, y, w, h = a["bbox"]
                ax.add_patch(Rectangle((x, y), w, h, fill=False, ec="#00ff66", lw=1.0))
                ax.text(x, y, names[a["category_id"]], fontsize=5, color="black",
                        bbox={"fc": "#00ff66", "pad": 0.3, "lw": 0})
            if k == 0:
                ax.set_ylabel(label(strategy), fontsize=8)
    fig.suptitle(f"MGRAL Fig. 4: first-cycle selections per strategy (top {n_images} by rank, seed "
                 f"{by_strategy[strategies[0]][0][0].get('seed', '?')}, ground-truth boxes)", fontsize=9)
    fig.tight_layout()
    out_dir = Path(out_dir)
    save_figure(fig, out_dir / "mgral_fig4.png")
    caption = ("The paper's Fig. 4 shows the first cycle's picks of mean entropy, sum entropy, MIAL and MGRAL "
               "(VOC) and argues from them (exposed or blurred images; many instances of redundant classes; single "
               "central objects; MGRAL's class diversity); it publishes no numbers. Ours, over each strategy's whole "
               "first-cycle batch (mean ± std over seeds): the images drawn are listed in mgral_fig4_images.csv.")
    return [write_csv(table, out_dir / "mgral_fig4.csv"), write_csv(shown_df, out_dir / "mgral_fig4_images.csv"),
            write_markdown(markdown_table(table, "MGRAL Fig. 4: first-cycle selections per strategy", caption),
                           out_dir / "mgral_fig4.md"), out_dir / "mgral_fig4.png"]
