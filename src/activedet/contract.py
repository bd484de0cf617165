"""The params contract of the steps: which params each step of ``python -m activedet`` reads.

The keys are dotted (a section covers everything under it). The pipeline passes a step exactly these
(``workflow/rules/common.smk`` asks :func:`step_params`), so a changed value re-runs only the jobs that read
it. A step that read a key not declared here would get the schema default instead of the user's value:
with ``ACTIVEDET_AUDIT_PARAMS`` set, every step records the keys it reads
(:class:`activedet.params.AuditedParams`) and tests/test_params_contract.py fails on an undeclared one.
"""
from __future__ import annotations

from .strategies import STRATEGIES

IMAGE_KEYS = ("device", "num_threads", "dataset.input_size", "dataset.keep_ratio", "dataset.on_box_outside",
              "dataset.cache_images", "dataset.max_image_pixels", "dataset.high_bit_scaling",
              "dataset.keep_unused_categories")
TRAIN_KEYS = IMAGE_KEYS + ("detector", "train")
# "strategy": the step also reads the options of its --strategy (strategies.<base>, variants.<name>);
# "strategy-trainer": only where that strategy has a trainer of its own.
STEP_PARAMS: dict[str, tuple[str, ...]] = {
    # data
    "make-dataset": ("dataset.digit_scenes",),
    "voc-to-coco": ("dataset.on_box_outside", "dataset.classes", "dataset.max_image_pixels", "dataset.high_bit_scaling"),
    "check-dataset": ("dataset.on_box_outside", "dataset.duplicate_images", "dataset.max_image_pixels",
                      "dataset.high_bit_scaling"),
    "init-split": ("dataset.on_box_outside", "dataset.duplicate_images", "dataset.keep_unused_categories"),
    "pretrain": ("device", "num_threads", "dataset.input_size", "detector", "train", "pretrain"),
    # train, and one cycle
    "train": TRAIN_KEYS + ("strategy-trainer",),
    "score": IMAGE_KEYS + ("strategy",),
    "select": ("strategy",),
    "merge": ("dataset.on_box_outside",),
    "merge-imported": ("dataset.on_box_outside",),
    "stop-set": ("dataset.on_box_outside",),
    # MGRAL
    "lookup-record": TRAIN_KEYS + ("strategy",),
    "train-agent": TRAIN_KEYS + ("strategy",),
    "mgral-time": TRAIN_KEYS + ("strategy",),
    "mgral-diagnose": TRAIN_KEYS + ("strategy",),
    # reports
    "report": ("active", "variants", "dataset.on_box_outside", "cost", "stopping"),
    "resolve-params": ("*",),
    "paper-fig5": ("paper_config", "paper_reports.fig5_setting", "dataset.format", "dataset.name", "detector.arch"),
    "paper-mgral-fig3": ("paper_config", "paper_reports.fig5_setting", "dataset.format", "dataset.name",
                         "detector.arch"),
    "paper-count-tp": ("paper_reports.fig7",),
    "paper-fig4": ("paper_reports.fig4", "dataset.on_box_outside"),
    "paper-table2-run": ("device", "num_threads", "paper_reports.table2"),
}


def step_params(step: str, strategy: str | None = None, params: dict | None = None) -> list[str]:
    """The dotted params keys ``step`` reads (its ``--strategy`` resolved with ``params``' variants).

    ``*``: every section of ``params``. Raises KeyError for a step that takes no params.
    """
    keys = []
    for key in STEP_PARAMS[step]:
        if key == "*":  # every section (the resolved params file)
            keys += sorted(params or {})
        elif key in ("strategy", "strategy-trainer"):
            if strategy is None:
                continue
            variant = (params or {}).get("variants", {}).get(strategy)
            base = variant["strategy"] if variant else strategy
            if key == "strategy-trainer" and STRATEGIES[base].trainer == "detector":
                continue
            keys += [f"strategies.{base}", f"variants.{strategy}"]  # variants.<name>: absent unless a variant
        else:
            keys.append(key)
    return keys
