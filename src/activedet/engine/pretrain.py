"""Pre-training of the tiny backbone on glyph scenes (the embedded default's "ImageNet").

Both papers rebuild every cycle's detector from an ImageNet-pretrained backbone. Here the same
detector (section ``detector``) is trained as a letter detector on :mod:`activedet.data.glyph_scenes`
with the recipe of section ``train`` for ``pretrain.iterations`` iterations, and its stem, stages and
FPN are written to a backbone file that every strategy, seed and cycle loads
(``detector.backbone_weights``). Nothing of the pool is read: the output depends only on the
``detector``, ``train`` and ``pretrain`` params (and the fonts matplotlib ships).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable


from ..data.glyph_scenes import LETTERS, GlyphScenes
from ..io import InputError
from ..models.backbones import PRETRAINED_FORMAT
from .train import Logger, load_checkpoint, save_checkpoint, train_detector


def pretrain_backbone(params: dict, out_path: str | Path, detector_path: str | Path,
                      log: Callable[[str], None] | None = None) -> dict:
    """Pre-train the tiny detector on glyph scenes; write the backbone file and the letter detector.

    ``out_path``: ``{format, arch, channels, fpn_channels, letters, pretrain, iterations, final_loss,
    backbone: state dict of stem, stages and FPN}`` (``torch.save``; read by
    :func:`activedet.models.backbones.load_pretrained_backbone`). ``detector_path``: the whole letter
    detector's checkpoint (as ``train`` writes). Deterministic for the same params and thread count.
    Returns the training summary. Raises ``InputError`` for another ``detector.arch`` than tiny or a
    non-square ``dataset.input_size``.
    """
    log = log or Logger()
    det = params["detector"]
    if det["arch"] != "tiny":
        raise InputError(f"pretrain: detector.arch {det['arch']} has ImageNet weights (detector.backbone_weights); "
                         "glyph-scene pre-training is for the tiny backbone")
    cfg = params["pretrain"]
    p = {**params,
         # the letter detector trains everything from random initialisation
         "detector": {**det, "backbone_weights": None, "frozen_stages": -1},
         "train": {**params["train"], "epochs": 1e-9, "min_iterations": cfg["iterations"],
                   "max_iterations": cfg["iterations"], "checkpoint_every": 0}}
    size = params["dataset"]["input_size"]
    if size[0] != size[1]:
        raise InputError(f"pretrain: dataset.input_size {size} - glyph scenes are square")
    log(f"generating {cfg['images']} glyph scenes ({len(LETTERS)} letters, seed {cfg['seed']})")
    scenes = GlyphScenes(cfg["images"], cfg["seed"], int(size[0]), cfg["glyphs_per_class"])
    summary = train_detector(p, scenes, detector_path, cfg["seed"], log=log)
    ckpt = load_checkpoint(detector_path)
    backbone = {k[len("backbone."):]: v for k, v in ckpt["model"].items() if k.startswith("backbone.")}
    with_meta = {"format": PRETRAINED_FORMAT, "arch": det["arch"], "channels": list(det["channels"]),
                 "fpn_channels": det["fpn_channels"], "letters": LETTERS, "pretrain": dict(cfg),
                 "iterations": summary["iterations"], "final_loss": summary["final_loss"],
                 "backbone": {k: v.clone() for k, v in backbone.items()}}
    save_checkpoint(out_path, with_meta)
    return summary
