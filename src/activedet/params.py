"""Load and validate experiment parameters against the packaged JSON schema.

The schema (``params.schema.yaml``) is the single source of truth: it gives
every key a type, a description and a default. ``workflow/schemas`` links to it
so Snakemake validates the same file before any job runs.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import yaml

from .io import InputError

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _with_defaults(validator_class):
    """A validator that fills ``default`` values while validating.

    This is the recipe from the jsonschema FAQ; jsonschema itself never fills
    defaults, and Snakemake's ``validate(set_default=True)`` is not available
    to a library that must not import Snakemake.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        known = ", ".join(sorted(error.schema.get("properties", {})))
        where = f"{key}." if error.absolute_path else ""
        return f"unknown key {', '.join(where + e for e in extra)} (known keys here: {known})"
    return f"{key}: {error.message}"


def validate(params: dict, source: str = "params") -> dict:
    """Return a deep copy of ``params`` with defaults filled; raise InputError naming the bad key."""
    params = copy.deepcopy(params) if params is not None else {}
    if not isinstance(params, dict):
        raise InputError(f"{source}: expected a mapping of parameters, got {type(params).__name__}")
    # Run twice: the first pass fills nested defaults that the second validates.
    validator = _Validator(load_schema())
    for _ in range(2):
        errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
        if errors:
            lines = "\n  ".join(_describe(e) for e in errors[:10])
            raise InputError(f"{source}: invalid parameters:\n  {lines}")
    _check_consistency(params, source)
    return params


def _check_consistency(p: dict, source: str) -> None:
    det = p["detector"]
    if det["backbone_weights"] == "random":  # random initialisation asked for by name (paper configurations)
        det["backbone_weights"] = None
    elif det["backbone_weights"] == "imagenet":
        raise InputError(f"{source}: detector.backbone_weights: imagenet stands for the file named in "
                         f"configs/paper/weights.yaml, which only the pipeline reads; give the weights file's path")
    if det["bg_iou_threshold"] > det["fg_iou_threshold"]:
        raise InputError(f"{source}: detector.bg_iou_threshold ({det['bg_iou_threshold']}) must not exceed "
                         f"detector.fg_iou_threshold ({det['fg_iou_threshold']})")
    if det["backbone_weights"] == "glyph_scenes" and det["arch"] != "tiny":
        raise InputError(f"{source}: detector.backbone_weights: glyph_scenes pre-trains the tiny backbone only; "
                         f"{det['arch']} takes a local ImageNet weights file")
    ds = p["dataset"]["digit_scenes"]
    if ds["min_size"] > ds["max_size"]:
        raise InputError(f"{source}: dataset.digit_scenes.min_size ({ds['min_size']}) exceeds max_size ({ds['max_size']})")
    STRATEGIES = strategy_names()
    for name, v in p["variants"].items():
        if name in STRATEGIES:
            raise InputError(f"{source}: variants.{name}: the name of a registered strategy cannot name a variant")
        if v["strategy"] not in STRATEGIES:
            raise InputError(f"{source}: variants.{name}.strategy: unknown strategy {v['strategy']!r} "
                             f"(known: {', '.join(sorted(STRATEGIES))})")
        sub = load_schema()["properties"]["strategies"]["properties"][v["strategy"]]
        merged = {**p["strategies"][v["strategy"]], **v["options"]}
        errors = sorted(_Validator(sub).iter_errors(merged), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            key = ".".join(str(x) for x in e.absolute_path)
            detail = (f"unknown option(s) {', '.join(sorted(set(merged) - set(sub['properties'])))}"
                      if e.validator == "additionalProperties" else f"{key}: {e.message}")
            raise InputError(f"{source}: variants.{name}.options: {detail}")
    known = set(STRATEGIES) | set(p["variants"])
    unknown = [s for s in p["active"]["strategies"] if s not in known]
    if unknown:
        raise InputError(f"{source}: active.strategies: unknown strategy {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(known))})")


def load(source: str | Path | dict | None) -> dict:
    """Parameters from a YAML/JSON file, an inline JSON object string, or a dict; validated."""
    if source is None:
        return validate({}, "defaults")
    if isinstance(source, dict):
        return validate(source, "params")
    text = str(source)
    if text.lstrip().startswith("{"):
        try:
            return validate(json.loads(text), "--params")
        except json.JSONDecodeError as e:
            raise InputError(f"--params: malformed JSON ({e.msg} at column {e.colno})") from None
    path = Path(text)
    if not path.is_file():
        raise InputError(f"{path}: parameter file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)  # safe_load: nothing in a params file is evaluated as code
    except yaml.constructor.ConstructorError as e:
        raise InputError(f"{path}: refused YAML tag: {e} (parameters are plain data; tags that build Python "
                         f"objects are never evaluated)") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: malformed YAML: {e}") from None
    return validate(data or {}, str(path))


def strategy_names() -> list[str]:
    """The registered strategies, as the schema's ``strategies`` section names them (activedet.strategies
    registers the same names; a test keeps the two equal)."""
    return sorted(load_schema()["properties"]["strategies"]["properties"])


def strategy_defaults(name: str, options: dict | None = None) -> dict:
    """``options`` of strategy ``name`` with the schema's defaults filled (validated; InputError when bad)."""
    return validate({"strategies": {name: dict(options or {})}}, f"strategies.{name}")["strategies"][name]


def check_experiment(p: dict, source: str = "params.yaml") -> None:
    """Cross-field rules of a whole experiment's params, checked once before any job runs (the workflow calls
    it; a step's partial params skip it). Raises InputError naming the key."""
    ds = p["dataset"]
    needed = {"coco": {k: None for k in ("pool_images", "pool_annotations", "test_images", "test_annotations")},
              "voc": {"pool_images": "the VOCdevkit folder", "test_images": "the VOCdevkit folder",
                      "pool_annotations": "image sets such as VOC2007/trainval,VOC2012/trainval",
                      "test_annotations": "image sets such as VOC2007/test"}}
    if ds["format"] not in ("digit_scenes", *needed):
        raise InputError(f"{source}: dataset.format {ds['format']} is not supported by the pipeline yet")
    for key, what in needed.get(ds["format"], {}).items():
        if not ds[key]:
            raise InputError(f"{source}: dataset.{key} must be set when dataset.format is {ds['format']}"
                             + (f" ({what})" if what else ""))
    seeds, paper = p["active"]["seeds"], p["paper_reports"]
    for section in ("fig4", "fig6"):
        seed = paper[section]["seed"]
        if seed is not None and seed not in seeds:
            raise InputError(f"{source}: paper_reports.{section}.seed {seed} is not one of active.seeds {seeds}")
    fig6, selecting = paper["fig6"], list(range(p["active"]["cycles"] - 1))
    if fig6["strategy"] in p["active"]["strategies"] and selecting:
        variant = p["variants"].get(fig6["strategy"])
        if (variant["strategy"] if variant else fig6["strategy"]) != "miaod":
            raise InputError(f"{source}: paper_reports.fig6.strategy {fig6['strategy']} is not MI-AOD or a variant "
                             f"of it")
        if fig6["cycle"] not in selecting:
            raise InputError(f"{source}: paper_reports.fig6.cycle {fig6['cycle']} selects no images "
                             f"(selecting cycles: {selecting})")



class AuditedParams(dict):
    """A params tree that records every key read through ``[]``, ``get`` and ``in`` (dotted, into ``reads``).

    Only for the params-contract audit (``ACTIVEDET_AUDIT_PARAMS``); :func:`plain` turns it back into dicts
    before it is saved anywhere.
    """

    def __init__(self, data: dict, reads: set, prefix: str = ""):
        super().__init__({k: AuditedParams(v, reads, f"{prefix}{k}.") if type(v) is dict else v
                          for k, v in data.items()})
        self._reads, self._prefix = reads, prefix

    def __getitem__(self, key):
        self._reads.add(f"{self._prefix}{key}")
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._reads.add(f"{self._prefix}{key}")
        return super().get(key, default)

    def __contains__(self, key):
        self._reads.add(f"{self._prefix}{key}")
        return super().__contains__(key)


def plain(p):
    """A params tree as plain dicts (every :class:`AuditedParams` in it unwrapped); anything else as it is."""
    if type(p) in (dict, AuditedParams):
        return {k: plain(v) for k, v in dict.items(p)}
    return p


def undeclared_reads(declared: list[str], reads) -> list[str]:
    """The ``reads`` that no declared key covers: a read is covered by a declared key equal to it, above it
    (``train`` covers ``train.lr``) or below it (reading ``dataset`` on the way to ``dataset.input_size``)."""
    def covered(r):
        return any(r == d or r.startswith(d + ".") or d.startswith(r + ".") for d in declared)
    return sorted(r for r in set(reads) if not covered(r))
