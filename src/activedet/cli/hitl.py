"""Human-in-the-loop steps (:mod:`activedet.hitl`): choose images of your own, export a selection for
annotation, import the labels, simulate an annotator."""
from __future__ import annotations

from .common import load_params, params_arg, predict_args, set_threads, strategy_help


def cmd_select_images(args) -> int:
    from ..hitl.select_images import select_from_folder

    p = load_params(args)
    set_threads(p, args, "score")
    given = p if args.params else None
    summary = select_from_folder(args.images, args.labeled, args.model, args.strategy, args.budget, args.out,
                                 seed=args.seed, device=args.device, batch_size=args.batch_size,
                                 strategy_options=given["strategies"] if given else None,
                                 image_options=given["dataset"] if given else None, min_score=args.min_score,
                                 url_prefix=args.image_url_prefix)
    print(f"{args.out}: {summary['selected']} of {summary['unlabeled']} unlabeled images chosen by {args.strategy} "
          f"(selected.csv, selected.png, Label Studio and CVAT files); annotate them, then run:\n"
          f"  {summary['import_command']}")
    return 0


def cmd_import_labels(args) -> int:
    from ..hitl.importer import import_labels

    s = import_labels(args.export, args.selected, args.labeled, args.format, args.imported_out,
                      args.regions, args.several_annotations)
    if s.get("annotation_seconds") is not None:
        print(f"{args.export}: annotation time measured by the tool: {s['annotation_seconds']:.1f} s")
    if "backup" in s:
        print(f"{s['written']}: +{s['images']} images, +{s['boxes']} boxes ({s['labeled_images']} labeled images); "
              f"the previous version is kept as {s['backup']}")
    else:
        print(f"{s['written']}: {s['images']} images with {s['boxes']} boxes imported; {args.labeled} unchanged")
    return 0


def cmd_simulate_annotator(args) -> int:
    from ..hitl.simulate import simulate_annotator

    s = simulate_annotator(args.tasks, args.ground_truth, args.out, args.format)
    print(f"{args.out}: {s['tasks']} tasks answered with {s['boxes']} ground-truth boxes ({s['format']} export)")
    return 0


def cmd_export_selection(args) -> int:
    from ..hitl.select_images import export_pipeline_selection

    set_threads(load_params(args), args, "score")
    s = export_pipeline_selection(args.selected, args.pool, args.images, args.model, args.labeled, args.out,
                                  args.imported, device=args.device, batch_size=args.batch_size,
                                  min_score=args.min_score, url_prefix=args.image_url_prefix)
    print(f"{args.out}: annotation tasks for {s['selected']} images; annotate them, then run:\n"
          f"  {s['import_command']}")
    return 0


def _export_args(sp) -> None:
    from ..hitl.boxes import DEFAULT_MIN_SCORE
    from ..hitl.label_studio import DEFAULT_URL_PREFIX

    predict_args(sp)
    sp.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                    help="detections below this score are not pre-annotations (Label Studio, CVAT, sheet); "
                         "predictions.json keeps all")
    sp.add_argument("--image-url-prefix", default=DEFAULT_URL_PREFIX,
                    help="Label Studio data.image = prefix + image path (default: Label Studio's local files "
                         "serving; e.g. http://host/images/ for a web server)")


def register(add) -> None:
    sp = add("select-images", cmd_select_images,
             "choose which images of a folder to annotate next and export them for Label Studio / CVAT")
    params_arg(sp)
    sp.add_argument("--images", required=True, help="folder of images (searched recursively); labeled file names "
                                                    "are relative to it")
    sp.add_argument("--labeled", required=True, help="labeled set (COCO JSON); the folder's other images are scored")
    sp.add_argument("--model", required=True, help="checkpoint trained on the labeled set")
    sp.add_argument("--strategy", required=True, help=strategy_help())
    sp.add_argument("--budget", type=int, required=True, help="images to choose")
    sp.add_argument("--out", required=True, help="output folder (selected.csv, label_studio_tasks.json, "
                                                 "label_studio_config.xml, cvat_annotations.xml, predictions.json, "
                                                 "selected.png, README.txt)")
    sp.add_argument("--seed", type=int, default=0, help="randomness of the selection (random strategy)")
    _export_args(sp)

    sp = add("import-labels", cmd_import_labels,
             "check annotators' labels against the selection and merge them into the labeled COCO file")
    sp.add_argument("--export", required=True, help="Label Studio JSON export, CVAT for images 1.1 XML or COCO JSON")
    sp.add_argument("--selected", required=True, help="selected.csv of the selection")
    sp.add_argument("--labeled", required=True, help="labeled set (COCO JSON); merged in place, the previous "
                                                     "version kept as <stem>.v<N>.json")
    sp.add_argument("--format", default="auto", choices=["auto", "label_studio", "cvat", "coco"])
    sp.add_argument("--regions", default="enclosing_box", choices=["enclosing_box", "skip"],
                    help="polygons, masks, brushes, ellipses and rotated boxes: import their enclosing boxes "
                         "(default) or skip them with a warning; points, polylines, skeletons and tags are always "
                         "skipped with a warning")
    sp.add_argument("--several-annotations", default="ground_truth_or_latest",
                    choices=["ground_truth_or_latest", "refuse"],
                    help="Label Studio tasks submitted by several annotators: take the one marked ground truth, "
                         "else the latest (default), or refuse unless exactly one is marked")
    sp.add_argument("--imported-out", default=None,
                    help="write only the imported labels (COCO JSON) here and leave --labeled unchanged "
                         "(the pipeline's human mode: {run}/imported_labels.json)")

    sp = add("simulate-annotator", cmd_simulate_annotator,
             "answer Label Studio tasks with ground truth, in an annotation tool's export format")
    sp.add_argument("--tasks", required=True, help="label_studio_tasks.json of a selection")
    sp.add_argument("--ground-truth", required=True, help="COCO JSON with the true boxes (e.g. the pool)")
    sp.add_argument("--out", required=True, help="the export to write")
    sp.add_argument("--format", default="label_studio", choices=["label_studio", "cvat", "coco"])

    sp = add("export-selection", cmd_export_selection,
             "annotation tasks (Label Studio, CVAT, COCO, contact sheet) for a pipeline cycle's selected.json")
    sp.add_argument("--selected", required=True, help="selected.json of the cycle")
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool (image records)")
    sp.add_argument("--images", required=True, help="pool images folder")
    sp.add_argument("--model", required=True, help="the cycle's checkpoint (pre-annotations)")
    sp.add_argument("--labeled", required=True, help="the labeled set the cycle trained on")
    sp.add_argument("--imported", required=True, help="where the import command shall write the labels")
    sp.add_argument("--out", required=True, help="output folder")
    _export_args(sp)
