"""MGRAL's steps (:mod:`activedet.mgral`): ``lookup-record``, ``lookup-table``, ``train-agent``, ``mgral-time``,
``mgral-compute``; torch is imported inside the steps only."""
from __future__ import annotations

import json
import time

from ..cycle import check_budget
from ..io import InputError, read_json, write_json
from .common import (
    configure_images,
    load_coco,
    load_params,
    params_arg,
    set_threads,
    threads_arg,
)


def _common(args):
    """Params (threads set), the MGRAL options of ``--strategy``, the labeled set and the pool."""
    from ..strategies import resolve

    p = load_params(args)
    set_threads(p, args)
    configure_images(p)
    base, options = resolve(args.strategy, p)
    if base != "mgral":
        raise InputError(f"{args.command}: --strategy {args.strategy} is not MGRAL or one of its variants")
    labeled = load_coco(args.labeled, p)
    if not labeled.annotations:
        raise InputError(f"{args.labeled}: the labeled set has no boxes at all; nothing to train on")
    return p, options, labeled, load_coco(args.pool, p)


def cmd_lookup_record(args) -> int:
    from ..data.splits import unlabeled_ids
    from ..mgral.proxy import ProxyRunner
    from ..mgral.steps import lookup_record

    p, options, labeled, pool = _common(args)
    check_budget(args.budget, len(unlabeled_ids(pool, labeled)), args.pool)
    runner = ProxyRunner(p, options, args.model, labeled, pool, args.images, args.seed)
    rec = lookup_record(runner, labeled, pool, args.seed, args.cycle, args.record, args.budget)
    write_json(args.out, rec)
    print(f"{args.out}: record {args.record}: proxy mAP@0.5 {rec['map50']:.4f} (teacher {rec['teacher_map50']:.4f}) "
          f"on {rec['n_val']} validation images in {rec['seconds']:.1f}s")
    return 0


def cmd_lookup_table(args) -> int:
    from ..mgral.steps import gather_table, write_parquet

    records = [read_json(path) for path in args.records]
    table = gather_table(records, [str(path) for path in args.records])
    write_parquet(args.out, table)
    print(f"{args.out}: {len(table)} records, proxy mAP@0.5 {table['map50'].mean():.4f} ± {table['map50'].std():.4f}, "
          f"{table['seconds'].sum():.1f}s of proxy training")
    return 0


def cmd_train_agent(args) -> int:
    from ..engine.train import Logger
    from ..mgral.proxy import ProxyRunner
    from ..mgral.steps import (
        read_embeddings,
        read_table,
        save_agent,
        train_agent_step,
        write_parquet,
    )

    t0 = time.perf_counter()
    p, options, labeled, pool = _common(args)
    emb = read_embeddings(args.scores)
    check_budget(args.budget, int((~emb["labeled"]).sum()), args.pool)
    table = read_table(args.table)

    def runner():  # built on the first fallback only: it loads the detector and the labeled images
        return ProxyRunner(p, options, args.model, labeled, pool, args.images, args.seed)

    log = Logger()
    agent, scores, compute = train_agent_step(options, emb, table, labeled, args.budget, args.seed, args.cycle,
                                              runner, (str(args.scores), str(args.table)), log)
    save_agent(args.out, agent, options, [int(i) for i in scores.loc[~scores["labeled"], "image_id"]], args.seed,
               args.cycle)
    write_parquet(args.scores_out, scores)
    compute.update(strategy=args.strategy, total_seconds=time.perf_counter() - t0)
    write_json(args.compute, compute)
    print(json.dumps({k: compute[k] for k in ("records", "fallbacks", "fallback_seconds", "agent_iterations",
                                             "agent_seconds", "mean_reward_lookup_seconds")}))
    return 0


def cmd_mgral_time(args) -> int:
    from ..mgral.measure import time_table, write_time_table

    p, options, labeled, pool = _common(args)
    df = time_table(p, options, args.model, args.images, labeled, pool, args.budget, args.seed, args.iterations)
    for path in write_time_table(df, args.out_dir):
        print(path)
    return 0


def cmd_mgral_compute(args) -> int:
    from ..mgral.measure import compute_table, write_compute_table

    df = compute_table(args.experiment_dir, args.strategies, args.seeds, args.cycles)
    for path in write_compute_table(df, args.out_dir):
        print(path)
    return 0


def cmd_mgral_diagnose(args) -> int:
    from ..data.splits import unlabeled_ids
    from ..io import atomic_path
    from ..mgral.diagnose import diagnose_cycle
    from ..mgral.steps import read_embeddings, read_table

    if args.batches < 3 or not 0 <= args.noise_batches <= args.batches:
        raise InputError(f"--batches must be at least 3 and --noise-batches within 0..{args.batches} "
                         f"(got {args.batches}, {args.noise_batches}): a rank correlation needs 3 pairs")
    p, options, labeled, pool = _common(args)
    check_budget(args.budget, len(unlabeled_ids(pool, labeled)), args.pool)
    emb, table = read_embeddings(args.scores), read_table(args.table)
    val = load_coco(args.val_annotations, p)
    if args.proxy_iterations is not None:
        if args.proxy_iterations < 1:
            raise InputError(f"--proxy-iterations must be at least 1, got {args.proxy_iterations}")
        options = {**options, "proxy_iterations": args.proxy_iterations}
    earlier = _read_diagnostic(args.true_gains) if args.true_gains else None
    df, summary = diagnose_cycle(p, options, args.model, args.images, labeled, pool, emb, table, val, args.val_images,
                                 args.budget, args.seed, args.cycle, args.work_dir, n_batches=args.batches,
                                 noise_batches=args.noise_batches, n_boot=args.bootstrap,
                                 proxy_teacher=args.proxy_teacher, true_gains=earlier)
    with atomic_path(args.out_csv) as tmp:
        df.assign(image_ids=df["image_ids"].map(lambda ids: " ".join(map(str, ids)))).to_csv(tmp, index=False)
    write_json(args.out_json, summary)
    print(json.dumps({k: summary[k] for k in ("proxy_vs_true_gain", "table_vs_proxy", "table_vs_true_gain",
                                              "proxy_noise")}))
    return 0


def _read_diagnostic(path):
    """An earlier mgral-diagnose CSV; InputError naming the file when it is not one."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a CSV file ({str(e).strip().splitlines()[0]})") from None
    missing = {"batch", "image_ids", "true_map50"} - set(df.columns)
    if missing:
        raise InputError(f"{path}: not an mgral-diagnose table (no column {', '.join(sorted(missing))})")
    return df


def register(add) -> None:
    def cycle_inputs(sp, with_model=True):
        params_arg(sp)
        sp.add_argument("--strategy", default="mgral", help="mgral or a variant of it (params: variants)")
        if with_model:
            sp.add_argument("--model", required=True, help="the cycle's detector (model.pt): teacher and warm start")
        sp.add_argument("--images", required=True, help="images folder of the pool")
        sp.add_argument("--labeled", required=True, help="labeled set of the cycle (COCO JSON)")
        sp.add_argument("--pool", required=True, help="COCO JSON of the pool (candidates enter without their labels)")
        sp.add_argument("--budget", type=int, required=True, help="images per batch (active.budget)")
        sp.add_argument("--seed", type=int, default=0)
        threads_arg(sp)

    sp = add("lookup-record", cmd_lookup_record,
             "MGRAL: one lookup-table record - a random candidate batch and its semi-supervised proxy mAP")
    cycle_inputs(sp)
    sp.add_argument("--cycle", type=int, required=True)
    sp.add_argument("--record", type=int, required=True, help="record number (its batch and proxy seed)")
    sp.add_argument("--out", required=True, help="record JSON")

    sp = add("lookup-table", cmd_lookup_table, "MGRAL: gather a cycle's records into the lookup table (parquet)")
    sp.add_argument("--records", nargs="+", required=True, help="record JSONs of one cycle")
    sp.add_argument("--out", required=True, help="lookup_table.parquet")

    sp = add("train-agent", cmd_train_agent,
             "MGRAL: train the sampling agent on the lookup table; write it, its pool scores and the compute spent")
    cycle_inputs(sp)
    sp.add_argument("--cycle", type=int, required=True)
    sp.add_argument("--scores", required=True, help="embeddings of the pool (score --strategy mgral)")
    sp.add_argument("--table", required=True, help="lookup_table.parquet of the cycle")
    sp.add_argument("--out", required=True, help="agent checkpoint (agent.pt)")
    sp.add_argument("--scores-out", required=True, help="the agent's scores of the pool (select reads them)")
    sp.add_argument("--compute", required=True, help="JSON of the compute spent (records, fallbacks, agent)")

    sp = add("mgral-time", cmd_mgral_time,
             "MGRAL: measure the paper's time table (10 agent iterations with / without the lookup table, one cycle)")
    cycle_inputs(sp)
    sp.add_argument("--iterations", type=int, default=10, help="agent iterations timed (paper: 10)")
    sp.add_argument("--out-dir", required=True, help="writes mgral_time.csv and mgral_time.md here")

    sp = add("mgral-diagnose", cmd_mgral_diagnose,
             "MGRAL, offline check: random batches of one cycle rated by the lookup table, the proxy and the true "
             "gain of retraining with their ground truth (Spearman correlations, proxy noise floor)")
    cycle_inputs(sp)
    sp.add_argument("--cycle", type=int, required=True)
    sp.add_argument("--scores", required=True, help="embeddings of the pool at this cycle (score --strategy mgral)")
    sp.add_argument("--table", required=True, help="lookup_table.parquet of the cycle")
    sp.add_argument("--val-annotations", required=True,
                    help="COCO JSON of a labeled validation split no strategy or training sees (the true gain)")
    sp.add_argument("--val-images", required=True, help="its images folder")
    sp.add_argument("--batches", type=int, default=16, help="random candidate batches rated (at least 3)")
    sp.add_argument("--noise-batches", type=int, default=4, help="of them, rated again under a second proxy seed")
    sp.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the correlations")
    sp.add_argument("--backbone-weights", default=None,
                    help="the run's pretrained backbone file (detector.backbone_weights: glyph_scenes; the retrained "
                         "detectors start from it, as every cycle does)")
    sp.add_argument("--proxy-teacher", choices=("cycle", "heldout"), default="cycle",
                    help="cycle: the method's teacher (the cycle model, trained on the proxy's validation images too); "
                         "heldout: a teacher trained on the proxy's training part only (a candidate fix)")
    sp.add_argument("--proxy-iterations", type=int, default=None,
                    help="the proxy's training iterations (default: strategies.mgral.proxy_iterations)")
    sp.add_argument("--true-gains", default=None,
                    help="an earlier diagnostic's CSV of the same cycle and seed: reuse its true gains (the same "
                         "batches) instead of retraining every batch")
    sp.add_argument("--work-dir", required=True, help="folder for the retrained detector (overwritten per batch)")
    sp.add_argument("--out-csv", required=True, help="one row per batch: table estimate, proxy reward, true gain")
    sp.add_argument("--out-json", required=True, help="correlations with 95%% intervals and the noise floor")

    sp = add("mgral-compute", cmd_mgral_compute,
             "MGRAL: compute spent per seed and cycle (proxy runs, fallbacks, agent) beside the mAP reached")
    sp.add_argument("--experiment-dir", required=True, help="results/<experiment>")
    sp.add_argument("--strategies", nargs="+", required=True, help="mgral and its variants in the experiment")
    sp.add_argument("--seeds", type=int, nargs="+", required=True)
    sp.add_argument("--cycles", type=int, required=True, help="active.cycles")
    sp.add_argument("--out-dir", required=True, help="writes mgral_compute.csv and mgral_compute.md here")
