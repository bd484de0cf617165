"""What the steps of ``python -m activedet`` share: params loading (with the params-contract audit), the
torch thread count, and the argument groups that many steps take."""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

THREADS_HELP = ("torch threads (default: params num_threads, else resources.train/score.threads as the pipeline's "
                "job; 0: torch's default, one per core)")
PARAMS_HELP = "params.yaml path or inline JSON object (defaults from the schema fill the rest)"
# Set by tests/test_params_contract.py: every step appends the params keys it read to a JSON file there.
AUDIT_ENV = "ACTIVEDET_AUDIT_PARAMS"


def load_params(args) -> dict:
    """The step's params (``--params``), validated with defaults filled; ``--backbone-weights`` overrides
    ``detector.backbone_weights``. With ``ACTIVEDET_AUDIT_PARAMS`` set the tree records what the step reads."""
    from .. import params

    p = params.load(getattr(args, "params", None))
    if getattr(args, "backbone_weights", None):  # the pipeline's pretrained backbone file
        p["detector"]["backbone_weights"] = args.backbone_weights
    if os.environ.get(AUDIT_ENV):
        p = _audited(p, args)
    return p


_AUDITS: list = []  # (file, step, strategy, declared, reads) of this process's steps, written by flush_audits
_AUDIT_SEQ = itertools.count()  # steps run in one process (tests call main() again and again) get files of their own


def _audited(p: dict, args) -> dict:
    from ..contract import step_params
    from ..params import AuditedParams

    reads: set[str] = set()
    declared = step_params(args.command, getattr(args, "strategy", None), p)
    out = Path(os.environ[AUDIT_ENV]) / f"{args.command}-{os.getpid()}-{next(_AUDIT_SEQ)}.json"
    _AUDITS.append((out, args.command, getattr(args, "strategy", None), declared, reads))
    return AuditedParams(p, reads)


def flush_audits() -> None:
    """Write the params-contract audit of the steps run in this process (``main`` calls it when a step ends)."""
    while _AUDITS:
        out, step, strategy, declared, reads = _AUDITS.pop(0)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"step": step, "strategy": strategy, "declared": declared,
                                   "reads": sorted(reads)}))


def configure_images(p: dict) -> None:
    """The pixel limit and high-bit scaling of every image file the step reads (params ``dataset``)."""
    from ..data.images import configure

    configure(p["dataset"])


def load_coco(path, params, allow_empty=False):
    """A COCO file read with the params' ``dataset.on_box_outside``."""
    from ..data.coco import load_coco as load

    return load(path, params["dataset"]["on_box_outside"], allow_empty=allow_empty)


def set_threads(params, args, kind: str = "train") -> None:
    """Set torch's intra-op threads for a step: params ``num_threads``, else ``--threads``, else the threads the
    pipeline gives this kind of job (``resources.<kind>.threads``, 1 by default).

    Float sums depend on the thread count, so a step run by hand matches its pipeline job only on the same
    count; ``--threads 0`` leaves torch's default (one per core).
    """
    import torch

    n = params.get("num_threads") or getattr(args, "threads", None)
    if n is None:
        n = params.get("resources", {}).get(kind, {}).get("threads", 1)
    if n:
        torch.set_num_threads(n)


def strategy_help() -> str:
    from ..strategies import STRATEGIES

    return f"acquisition strategy: {', '.join(sorted(STRATEGIES))}, or a variant named under variants: in --params"


# ---------------------------------------------------------------- argument groups
def params_arg(sp) -> None:
    sp.add_argument("--params", default=None, help=PARAMS_HELP)


def threads_arg(sp) -> None:
    sp.add_argument("--threads", type=int, default=None, help=THREADS_HELP)


def predict_args(sp) -> None:
    """Device, batch size and threads of a step that runs a trained model."""
    sp.add_argument("--device", default="auto")
    sp.add_argument("--batch-size", type=int, default=64)
    threads_arg(sp)


def training_args(sp, images_help: str = "images folder the labeled file names are relative to") -> None:
    """What every training step takes: params, images, labeled set, checkpoint, seed, resume state, summary,
    pretrained backbone, threads."""
    params_arg(sp)
    sp.add_argument("--images", required=True, help=images_help)
    sp.add_argument("--labeled", required=True, help="labeled set (COCO JSON)")
    sp.add_argument("--out", required=True, help="checkpoint path (model.pt)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--state", default=None, help="resumable training state (default: <out>.resume)")
    sp.add_argument("--summary", default=None, help="write a JSON training summary here")
    sp.add_argument("--backbone-weights", default=None,
                    help="pretrained backbone file (overrides detector.backbone_weights; the pipeline passes its "
                         "pretrain_backbone output)")
    threads_arg(sp)
