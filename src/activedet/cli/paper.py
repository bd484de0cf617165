"""The papers' figures and tables (:mod:`activedet.paper`): ``python -m activedet paper-...``, one per pipeline job."""
from __future__ import annotations

import json
from pathlib import Path

from ..io import InputError, write_text
from .common import load_params, params_arg


def _params(args) -> dict:
    return load_params(args)


def _dataset_label(p: dict) -> str:
    ds = p["dataset"]
    return f"digit scenes ({ds['name']})" if ds["format"] == "digit_scenes" else f"{ds['name']} ({ds['format']})"


def _setting(p: dict) -> str | None:
    from ..paper.reports.curves import resolve_setting

    return resolve_setting(p["paper_reports"]["fig5_setting"], p.get("paper_config"), p["dataset"]["format"],
                           p["dataset"]["name"], p["detector"]["arch"])


def _print(paths) -> int:
    for path in paths:
        print(path)
    return 0


def cmd_fig5(args) -> int:
    from ..paper.reports.curves import write_fig5

    p = _params(args)
    return _print(write_fig5(args.curves, args.out_dir, _setting(p), _dataset_label(p)))


def cmd_mgral_fig3(args) -> int:
    from ..paper.reports.curves import write_mgral_fig3

    p = _params(args)
    return _print(write_mgral_fig3(args.curves, args.out_dir, _setting(p), _dataset_label(p)))


def cmd_table5(args) -> int:
    from ..paper.reports.timing import write

    return _print(write(args.experiment_dir, args.curves, args.out_dir))


def cmd_fig6(args) -> int:
    from ..paper.reports.heatmaps import write

    _threads(args)
    return _print(write(args.model, args.pool, args.images, args.selected, args.out_dir, args.n_images, args.device))


def cmd_count_tp(args) -> int:
    from ..paper.reports.true_positives import count_run

    _threads(args)
    cfg = _params(args)["paper_reports"]["fig7"]
    c = count_run(args.model, args.pool, args.images, args.selected, args.out, cfg["score_threshold"],
                  cfg["iou_threshold"], args.device)
    print(json.dumps({k: c[k] for k in ("strategy", "seed", "cycle", "n_selected", "n_gt", "n_detections", "n_tp")}))
    return 0


def cmd_fig7(args) -> int:
    from ..paper.reports.true_positives import write

    return _print(write(args.counts, args.out_dir))


def cmd_fig4(args) -> int:
    from ..paper.reports.selections import write

    p = _params(args)
    return _print(write(args.selected, args.pool, args.images, args.out_dir, p["paper_reports"]["fig4"]["n_images"],
                        p["dataset"]["on_box_outside"]))


def cmd_table2_run(args) -> int:
    import torch

    from ..paper.classification import data
    from ..paper.classification.active import run
    from ..device import resolve_device
    from ..io import atomic_path

    p = _params(args)
    _threads(args, p["num_threads"])
    cfg = p["paper_reports"]["table2"]
    df = run(cfg, data.load(cfg), args.method, args.seed, resolve_device(p["device"]))
    with atomic_path(args.out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    print(f"{args.out}: {args.method} seed {args.seed}, final accuracy {df['accuracy'].iloc[-1]:.4f} "
          f"on {torch.get_num_threads()} threads")
    return 0


def cmd_table2(args) -> int:
    from ..paper.classification.table import write

    return _print(write(args.runs, args.out_dir))


def cmd_index(args) -> int:
    """README.md of the paper folder: links to every figure, then every table, in the order given."""
    out = Path(args.out)
    parts = [f"# {args.title}\n",
             "Ours beside the papers' numbers (`src/activedet/paper_numbers/`); every table also as CSV next to "
             "its Markdown. Rebuild with `snakemake --cores all paper` (or `make paper`).\n"]
    figures = [Path(f) for f in args.figures]
    if figures:
        parts.append("## Figures\n\n" + "".join(f"- [{f.stem}]({_relative(f, out.parent)})\n" for f in figures))
    for md in args.tables:
        path = Path(md)
        if not path.is_file():
            raise InputError(f"{path}: table not found")
        parts.append(f"<!-- {_relative(path, out.parent)} -->\n" + path.read_text(encoding="utf-8"))
    write_text(out, "\n".join(parts))
    print(out)
    return 0


def _relative(path: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(path, start)).as_posix()


def _threads(args, n: int = 0) -> None:
    import torch

    n = n or getattr(args, "threads", 0)
    if n:
        torch.set_num_threads(n)


def register(add) -> None:
    sp = add("paper-fig5", cmd_fig5, "MI-AOD Fig. 5: our learning curves beside the paper's (PNG, CSV, Markdown)")
    params_arg(sp)
    sp.add_argument("--curves", required=True, help="curves.csv of the experiment")
    sp.add_argument("--out-dir", required=True)

    sp = add("paper-mgral-fig3", cmd_mgral_fig3, "MGRAL Fig. 3: learning curves of all strategies beside the paper's")
    params_arg(sp)
    sp.add_argument("--curves", required=True, help="curves.csv of the experiment")
    sp.add_argument("--out-dir", required=True)

    sp = add("paper-table5", cmd_table5, "MI-AOD Table 5: time per cycle from the Snakemake benchmark files")
    sp.add_argument("--experiment-dir", required=True, help="results/<experiment> (runs/*/benchmarks/*.tsv)")
    sp.add_argument("--curves", required=True, help="curves.csv of the experiment (its runs and labeled sizes)")
    sp.add_argument("--out-dir", required=True)

    sp = add("paper-fig6", cmd_fig6,
             "MI-AOD Fig. 6: IUL / IUR / MIL-score heatmaps of an MI-AOD model's selected images")
    sp.add_argument("--model", required=True, help="an MI-AOD model.pt of a cycle")
    sp.add_argument("--selected", required=True, help="the same cycle's selected.json (its first images are drawn)")
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool")
    sp.add_argument("--images", required=True, help="pool images folder")
    sp.add_argument("--n-images", type=int, default=4)
    sp.add_argument("--out-dir", required=True)
    sp.add_argument("--device", default="auto")
    sp.add_argument("--threads", type=int, default=0)

    sp = add("paper-count-tp", cmd_count_tp,
             "true positives of a cycle's model on the images its strategy selected (for MI-AOD Fig. 7)")
    params_arg(sp)
    sp.add_argument("--model", required=True)
    sp.add_argument("--selected", required=True)
    sp.add_argument("--pool", required=True, help="COCO JSON with the pool's ground truth")
    sp.add_argument("--images", required=True)
    sp.add_argument("--out", required=True, help="counts JSON")
    sp.add_argument("--device", default="auto")
    sp.add_argument("--threads", type=int, default=0)

    sp = add("paper-fig7", cmd_fig7, "MI-AOD Fig. 7: true positives among the selected images per cycle and strategy")
    sp.add_argument("--counts", nargs="+", required=True, help="paper-count-tp JSONs")
    sp.add_argument("--out-dir", required=True)

    sp = add("paper-fig4", cmd_fig4, "MGRAL Fig. 4: the first cycle's selected images per strategy, side by side")
    params_arg(sp)
    sp.add_argument("--selected", nargs="+", required=True, help="cycle-0 selected.json files (any strategies, seeds)")
    sp.add_argument("--pool", required=True)
    sp.add_argument("--images", required=True)
    sp.add_argument("--out-dir", required=True)

    sp = add("paper-table2-run", cmd_table2_run,
             "MI-AOD Table 2: active image classification with or without IUL, one method and seed (CSV)")
    params_arg(sp)
    sp.add_argument("--method", required=True, help="random | iul_random | entropy | iul")
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--threads", type=int, default=0)

    sp = add("paper-table2", cmd_table2, "MI-AOD Table 2 beside the paper from paper-table2-run tables")
    sp.add_argument("--runs", nargs="+", required=True)
    sp.add_argument("--out-dir", required=True)

    sp = add("paper-index", cmd_index, "README.md of the paper folder: the figures and every table")
    sp.add_argument("--figures", nargs="*", default=[], help="PNG files to link")
    sp.add_argument("--tables", nargs="*", default=[], help="Markdown tables to include, in order")
    sp.add_argument("--title", default="Paper figures and tables")
    sp.add_argument("--out", required=True)
