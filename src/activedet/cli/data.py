"""Data steps: make-dataset, pretrain, init-split, check-dataset, voc-to-coco."""
from __future__ import annotations

import json

from ..io import InputError, write_json
from .common import configure_images, load_coco, load_params, params_arg, set_threads, threads_arg


def cmd_make_dataset(args) -> int:
    from ..data.checks import foreign_files
    from ..data.digit_scenes import generate

    p = load_params(args)
    foreign = foreign_files(args.out, "digit_scenes")  # never replace or delete a user's files
    if foreign:
        raise InputError("\n".join(foreign))
    summary = generate(args.out, **dict(p["dataset"]["digit_scenes"]))
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}))
    return 0


def cmd_pretrain(args) -> int:
    from ..engine.pretrain import pretrain_backbone

    p = load_params(args)
    set_threads(p, args)
    summary = pretrain_backbone(p, args.out, args.detector)
    if args.summary:
        write_json(args.summary, summary)
    print(json.dumps(summary))
    return 0


def cmd_init_split(args) -> int:
    from ..data.coco import POOL_CATEGORIES_KEY, CocoData, without_unused_categories
    from ..data.splits import initial_split

    p = load_params(args)
    pool = load_coco(args.pool, p)
    if not p["dataset"]["keep_unused_categories"]:
        pool = without_unused_categories(pool, "the pool")
    # the labeled sets of every cycle carry the pool's classes (training keeps them as they are)
    pool = CocoData(pool.path, pool.images, pool.annotations, pool.categories,
                    {**pool.info, POOL_CATEGORIES_KEY: str(args.pool)})
    labeled = initial_split(pool, args.size, args.seed, p["dataset"]["duplicate_images"])
    write_json(args.out, labeled.to_dict())
    print(f"{args.out}: {len(labeled.images)} of {len(pool.images)} pool images labeled (seed {args.seed})")
    return 0


def cmd_check_dataset(args) -> int:
    from ..data.checks import check_dataset

    p = load_params(args)
    configure_images(p)  # the pixel limit and high-bit scaling every image is decoded with
    pool, test = load_coco(args.pool, p), load_coco(args.test, p)
    report = check_dataset(pool, args.pool_images, test, args.test_images, p["dataset"]["duplicate_images"],
                           threads=args.threads or 1)
    for w in report["warnings"]:
        print(f"warning: {w}")
    write_json(args.out, report)
    print(f"{args.out}: {report['pool']['images']} pool and {report['test']['images']} test images checked")
    return 0


def cmd_voc_to_coco(args) -> int:
    from ..data.voc import read_voc, summary

    p = load_params(args)
    configure_images(p)  # images without a size in their XML are opened
    sources = [(args.root, args.sets)] + [tuple(s) for s in args.class_sets or []]
    coco = read_voc(args.root, args.sets, p["dataset"]["on_box_outside"], p["dataset"]["classes"], sources)
    write_json(args.out, coco.to_dict(), indent=None)
    print(json.dumps({"out": args.out, **summary(coco)}))
    return 0


def register(add) -> None:
    sp = add("make-dataset", cmd_make_dataset, "generate the embedded digit-scenes dataset (pool + test, PNG + COCO JSON)")
    params_arg(sp)
    sp.add_argument("--out", required=True, help="output folder (pool/, test/, pool.json, test.json)")

    sp = add("pretrain", cmd_pretrain, "pre-train the tiny backbone on glyph scenes (printed letters; reads no pool "
                                       "image or label) for detector.backbone_weights")
    params_arg(sp)
    sp.add_argument("--out", required=True, help="backbone file to write (stem, stages and FPN weights)")
    sp.add_argument("--detector", required=True, help="checkpoint of the whole letter detector to write")
    sp.add_argument("--summary", default=None, help="write a JSON training summary here")
    threads_arg(sp)

    sp = add("init-split", cmd_init_split, "draw the initial labeled set from the pool")
    params_arg(sp)
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool")
    sp.add_argument("--size", type=int, required=True, help="number of images to label")
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--out", required=True, help="labeled set (COCO JSON)")

    sp = add("check-dataset", cmd_check_dataset,
             "decode every pool and test image and refuse the same image twice (by path or content)")
    params_arg(sp)
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool")
    sp.add_argument("--pool-images", required=True, help="images folder of the pool")
    sp.add_argument("--test", required=True, help="COCO JSON of the test split")
    sp.add_argument("--test-images", required=True, help="images folder of the test split")
    sp.add_argument("--out", required=True, help="report (JSON: counts and content digests)")
    sp.add_argument("--threads", type=int, default=1, help="images decoded at once")

    sp = add("voc-to-coco", cmd_voc_to_coco,
             "read PASCAL VOC XML + ImageSets into the COCO JSON the pipeline reads (difficult objects flagged)")
    params_arg(sp)
    sp.add_argument("--root", required=True, help="VOCdevkit folder (holding VOC2007/, VOC2012/); the JSON's file "
                                                  "names are relative to it")
    sp.add_argument("--sets", required=True, help="image sets, comma-separated: VOC2007/trainval,VOC2012/trainval")
    sp.add_argument("--class-sets", nargs=2, action="append", metavar=("ROOT", "SETS"),
                    help="with dataset.classes null: also read class names from these image sets (repeatable; the "
                         "other split's, so pool and test get the same category ids)")
    sp.add_argument("--out", required=True, help="COCO JSON to write")
