# Input functions, paths and wildcard constraints shared by the rules.
import json
import os
import shlex
import sys

from activedet import params as activedet_params
from activedet.contract import step_params
from activedet.io import InputError
from activedet.paper.tables import TABLES, strategies_needed
from activedet.strategies import STRATEGIES, resolve

# Validated once before any job runs, by the library (activedet.params: the schema, defaults filled, every
# cross-field rule); the message names the bad key plainly.
try:
    config.update(activedet_params.validate(config, "params.yaml (Snakemake config)"))
    activedet_params.check_experiment(config, "params.yaml")
except InputError as e:
    sys.exit(f"error: {e}")

# The library's CLI run by the interpreter that runs Snakemake (the project's venv), whatever PATH says.
ACTIVEDET = f"{shlex.quote(sys.executable)} -m activedet"
DATASET = config["dataset"]
ACTIVE = config["active"]
EXP = f"{config['output_dir']}/{config['experiment']}"
RUN = EXP + "/runs/{strategy}/seed{seed}/cycle{cycle}"
# active.oracle: human - people label the selected images; merge_labels waits for {RUN}/imported_labels.json
HUMAN = ACTIVE["oracle"] == "human"

if DATASET["format"] == "coco":
    POOL_JSON, TEST_JSON = DATASET["pool_annotations"], DATASET["test_annotations"]
    POOL_IMAGES, TEST_IMAGES = DATASET["pool_images"], DATASET["test_images"]
else:
    # digit_scenes: rule make_dataset writes them; voc: rule voc_to_coco writes the image sets' COCO JSON, whose
    # file names are relative to the VOCdevkit folder, the images folder of both splits.
    DATA = f"{config['data_dir']}/{DATASET['name']}"
    POOL_JSON, TEST_JSON = f"{DATA}/pool.json", f"{DATA}/test.json"
    if DATASET["format"] == "digit_scenes":
        POOL_IMAGES, TEST_IMAGES = f"{DATA}/pool/images", f"{DATA}/test/images"
    else:
        POOL_IMAGES, TEST_IMAGES = DATASET["pool_images"], DATASET["test_images"]

# Everything knowable before the first job, checked before it (activedet.data.checks): every file the
# configuration names is there (a missing one is named, never generated in its place), the annotation files
# read, the pool holds the plan, the classes are present, no image is listed twice, and a generating rule
# would replace no file it did not write. The jobs' own Snakemake processes (cluster, subprocesses) skip it.
GENERATED = DATASET["format"] in ("digit_scenes", "voc")  # the formats a rule writes the COCO JSON of
if workflow.is_main_process:
    from activedet.data.checks import plan_problems, summarize

    try:
        _errors, _warnings = plan_problems(DATASET, ACTIVE, DATA if GENERATED else None)
    except InputError as e:
        _errors, _warnings = [str(e)], []
    for _w in _warnings:
        print(f"warning: {_w}", file=sys.stderr)
    if _errors:
        print("\n".join(f"error: {e}" for e in summarize(_errors).splitlines()), file=sys.stderr)
        sys.exit(2)


# Strategy names: the registered strategies and the named variants of params.yaml.
STRATEGY_NAMES = sorted(STRATEGIES) + sorted(config["variants"])


def base_of(name):
    return resolve(name, config)[0]


wildcard_constraints:
    strategy="|".join(STRATEGY_NAMES),
    seed=r"\d+",
    cycle=r"\d+",


# detector.backbone_weights: glyph_scenes - every training starts from the backbone that rule
# pretrain_backbone writes once per experiment (the papers' ImageNet-pretrained start, each cycle).
PRETRAINED = f"{EXP}/pretrained/backbone.pt" if config["detector"]["backbone_weights"] == "glyph_scenes" else None
PRETRAINED_INPUT = {"backbone": PRETRAINED} if PRETRAINED else {}
BACKBONE_ARG = f"--backbone-weights {shlex.quote(PRETRAINED)}" if PRETRAINED else ""


def param_json(*keys):
    """The named params (dotted keys, e.g. ``dataset.digit_scenes``) as one shell-quoted JSON argument; a key
    the config lacks (an optional section, a strategy that is not a variant) is left out.

    Passing exactly what a step reads makes Snakemake's params trigger re-run only the jobs
    a changed parameter affects.
    """
    out = {}
    for key in keys:
        *parents, leaf = key.split(".")
        src = config
        for part in parents:
            src = src.get(part, {})
        if leaf not in src:  # no empty parent either: the JSON (and the params tree a step rebuilds) stays as before
            continue
        dst = out
        for part in parents:
            dst = dst.setdefault(part, {})
        dst[leaf] = src[leaf]
    return shlex.quote(json.dumps(out, sort_keys=True))


def step_json(step, strategy=None):
    """param_json of the params ``step`` reads (activedet.contract.STEP_PARAMS), for ``strategy``'s options."""
    return param_json(*step_params(step, strategy, config))


def trainer_of(name):
    return STRATEGIES[base_of(name)].trainer


def train_strategy_arg(w):
    """``--strategy <name> `` where a cycle's model comes from the strategy's own trainer (not for eval_)."""
    return "" if w.role or trainer_of(w.strategy) == "detector" else f"--strategy {w.strategy} "


# Strategies whose models come from the plain detector training (their cycle 0 is shared).
PLAIN_STRATEGIES = "|".join(n for n in STRATEGY_NAMES if trainer_of(n) == "detector")
# Own-trainer strategies whose learning curve comes from the plain detector trained on their labeled
# images (option eval_detector: plain): rule train (eval_model.pt) / share_initial_eval_detector.
EVAL_PLAIN = [n for n in STRATEGY_NAMES
              if trainer_of(n) != "detector" and resolve(n, config)[1].get("eval_detector") == "plain"]
EVAL_PLAIN_STRATEGIES = "|".join(EVAL_PLAIN) or "(?!)"  # "(?!)" matches nothing


def chain_of(name):
    """What decides a run's models, scores and selections: its base strategy and options, but eval_detector
    (which only names the detector its learning curve is measured with)."""
    base, options = resolve(name, config)
    return base, {k: v for k, v in options.items() if k != "eval_detector"}


# An own-trainer strategy of the run whose chain equals an earlier one's (MI-AOD and its eval_detector: plain
# variant) gets the same models, scores and selections: training, scoring and selection read no strategy
# name (selections are seeded by seed and cycle). Its run copies them from that twin's run (share_twin_run)
# and trains only its evaluation detector. Plain-trainer strategies are left out: their cycle 0 is shared.
TWIN_OF = {}
for _i, _name in enumerate(ACTIVE["strategies"]):
    if trainer_of(_name) != "detector":
        _twin = next((m for m in ACTIVE["strategies"][:_i]
                      if m not in TWIN_OF and trainer_of(m) != "detector" and chain_of(m) == chain_of(_name)), None)
        if _twin is not None:
            TWIN_OF[_name] = _twin
TWIN_STRATEGIES = "|".join(TWIN_OF) or "(?!)"
TWIN_FILES = r"model\.pt|train\.json|scores\.parquet|score\.json|selected\.json|labeled\.json"


def twin_source(w):
    """The file of the twin's run that a twin's run copies (share_twin_run)."""
    return f"{EXP}/runs/{TWIN_OF[w.strategy]}/seed{w.seed}/cycle{w.cycle}/{w.twin_file}"


def eval_model(w):
    """The model behind a cycle's metrics: the strategy's own, or the plain detector (eval_detector: plain)."""
    return f"{run_dir(w)}/{'eval_model.pt' if w.strategy in EVAL_PLAIN else 'model.pt'}"


def res(kind):
    r = config["resources"][kind]
    return {"mem_mb": r["mem_mb"], "runtime": r["runtime"], "gpu": r["gpu"]}


def labeled_before(w):
    """The labeled set that cycle ``w.cycle`` trains on: the seed's initial split, then the last merge."""
    c = int(w.cycle)
    if c == 0:
        return f"{EXP}/splits/seed{w.seed}/labeled.json"
    return f"{EXP}/runs/{w.strategy}/seed{w.seed}/cycle{c - 1}/labeled.json"


def score_inputs(w):
    inputs = {"labeled": labeled_before(w), "pool": POOL_JSON}
    if STRATEGIES[base_of(w.strategy)].needs_model:
        inputs["model"] = f"{EXP}/runs/{w.strategy}/seed{w.seed}/cycle{w.cycle}/model.pt"
    return inputs


def run_dir(w):
    """{RUN} of a job's wildcards."""
    return f"{EXP}/runs/{w.strategy}/seed{w.seed}/cycle{w.cycle}"


def merge_inputs(w):
    """What merge_labels reads: the pool's ground truth (oracle), or in human mode also the imported labels.

    The imported labels come from people (`import-labels`), never from a job, so Snakemake can never
    delete them. While they are missing merge_labels waits on imported_labels.pending, the output of
    await_imported_labels, which fails printing what to annotate and how to import it.
    """
    run = run_dir(w)
    inputs = {"labeled": labeled_before(w), "selected": f"{run}/selected.json", "pool": POOL_JSON}
    if HUMAN:
        imported = f"{run}/imported_labels.json"
        inputs["imported"] = imported if os.path.exists(imported) else f"{run}/imported_labels.pending"
    return inputs


def run_files(name):
    return expand(f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle{{cycle}}/{name}",
                  strategy=ACTIVE["strategies"], seed=ACTIVE["seeds"], cycle=range(ACTIVE["cycles"]))


# Paper tables whose strategies and variants this experiment runs.
PAPER_TABLES = [t for t in TABLES if set(strategies_needed(t)) <= set(ACTIVE["strategies"])]


def report_outputs():
    tables = expand(f"{EXP}/tables/{{table}}.{{ext}}", table=PAPER_TABLES, ext=["csv", "md"])
    return [f"{EXP}/curves.csv", f"{EXP}/summary.csv", f"{EXP}/time_per_step.csv",
            f"{EXP}/figures/learning_curves.png", f"{EXP}/metrics.json", f"{EXP}/resolved_params.yaml"] + tables
