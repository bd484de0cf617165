"""Tests for activedet.params: defaults, validation messages, safe YAML, inline JSON, schema completeness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from activedet import params
from activedet.io import InputError

from helpers.pipeline import ROOT as REPO


# ------------------------------------------------------------------ defaults
def test_load_none_fills_every_default():
    p = params.load(None)
    assert p["experiment"] == "default"
    assert p["device"] == "auto"
    assert p["dataset"]["format"] == "digit_scenes"
    assert p["dataset"]["input_size"] == [64, 64]
    assert p["dataset"]["digit_scenes"]["n_pool"] == 2000
    assert p["dataset"]["digit_scenes"]["noise_range"] == [0.0, 0.12]
    assert p["detector"]["anchor_sizes"] == [[10, 14], [20, 28], [40, 56]]
    assert p["train"]["max_iterations"] is None
    assert p["active"]["strategies"] == ["random", "entropy", "coreset", "miaod", "ll4al", "cdal", "ebal", "mgral"]
    assert p["strategies"]["miaod"]["topk"] == 134 and p["variants"] == {}
    assert p["strategies"]["entropy"]["aggregate"] == "mean"
    assert p["strategies"]["random"] == {}
    assert p["resources"]["train"]["threads"] == 1
    assert p["resources"]["light"] == {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0}


def _defaults_from_schema(schema: dict, node: dict) -> dict:
    """The instance the schema's defaults describe, built independently of the validator."""
    if "$ref" in node:
        name = node["$ref"].split("/")[-1]
        node = {**schema["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    out = {}
    for key, sub in node.get("properties", {}).items():
        if sub.get("type") == "object" or "$ref" in sub:
            out[key] = {**_defaults_from_schema(schema, sub), **dict(sub.get("default", {}))}
        else:
            out[key] = sub["default"]
    return out


def test_load_none_matches_every_schema_default():
    schema = params.load_schema()
    expected = _defaults_from_schema(schema, schema)
    assert params.load(None) == expected


def test_nested_default_respects_given_siblings():
    p = params.load({"dataset": {"digit_scenes": {"n_pool": 50}}, "resources": {"train": {"gpu": 1}}})
    assert p["dataset"]["digit_scenes"]["n_pool"] == 50
    assert p["dataset"]["digit_scenes"]["n_test"] == 500
    assert p["dataset"]["format"] == "digit_scenes"
    # A given resources entry is completed from the $defs defaults, not the entry's default.
    assert p["resources"]["train"] == {"gpu": 1, "threads": 1, "mem_mb": 2000, "runtime": 30}


def test_every_schema_description_parses_as_one_string():
    """An unquoted ', ' in a flow-mapping description makes YAML split it into stray null keys."""
    schema = yaml.safe_load(Path(params.__file__).with_name("params.schema.yaml").read_text())
    bad = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if value is None and key != "default":
                    bad.append(f"{path}/{key}")
                if key == "description" and not isinstance(value, str):
                    bad.append(f"{path}/description")
                walk(value, f"{path}/{key}")

    walk(schema, "")
    assert not bad


def test_load_does_not_mutate_input():
    given = {"train": {"lr": 0.1}}
    params.load(given)
    assert given == {"train": {"lr": 0.1}}


def test_repo_params_file_validates():
    p = params.load(REPO / "params.yaml")
    assert p["active"]["budget"] == 100
    assert p["detector"]["arch"] == "tiny"
    # keys absent from params.yaml come from the schema
    assert p["resources"]["score"]["runtime"] == 30
    p2 = params.load(str(REPO / "params.yaml"))
    assert p2 == p


# ---------------------------------------------------------------- validation
def test_typo_key_names_dotted_key():
    with pytest.raises(InputError) as e:
        params.load({"train": {"lrr": 1}})
    assert "train.lrr" in str(e.value)


def test_typo_top_level_key():
    with pytest.raises(InputError) as e:
        params.load({"trian": {}})
    assert "trian" in str(e.value)


def test_wrong_type_names_key():
    with pytest.raises(InputError) as e:
        params.load({"train": {"batch_size": "16"}})
    assert "train.batch_size" in str(e.value)


def test_bool_is_not_integer():
    with pytest.raises(InputError, match="active.budget"):
        params.load({"active": {"budget": True}})


def test_out_of_range_value_names_key():
    with pytest.raises(InputError, match=r"detector\.focal_alpha"):
        params.load({"detector": {"focal_alpha": 1.5}})


def test_wrong_type_in_array_names_index():
    with pytest.raises(InputError, match=r"dataset\.input_size\.1"):
        params.load({"dataset": {"input_size": [64, "x"]}})


def test_typo_in_ref_resources():
    with pytest.raises(InputError, match=r"resources\.train\.thread"):
        params.load({"resources": {"train": {"thread": 4}}})


def test_unknown_strategy_named():
    with pytest.raises(InputError) as e:
        params.load({"active": {"strategies": ["random", "entropyy"]}})
    assert "entropyy" in str(e.value)
    assert "active.strategies" in str(e.value)


def test_bg_iou_above_fg_iou_rejected():
    with pytest.raises(InputError, match="bg_iou_threshold"):
        params.load({"detector": {"bg_iou_threshold": 0.6, "fg_iou_threshold": 0.5}})
    # equal is allowed
    p = params.load({"detector": {"bg_iou_threshold": 0.5, "fg_iou_threshold": 0.5}})
    assert p["detector"]["bg_iou_threshold"] == 0.5


def test_min_size_above_max_size_rejected():
    with pytest.raises(InputError, match="min_size"):
        params.load({"dataset": {"digit_scenes": {"min_size": 20, "max_size": 10}}})


def test_non_mapping_rejected():
    with pytest.raises(InputError, match="mapping"):
        params.validate([1, 2], "x.yaml")


# ------------------------------------------------------------------- files
def test_yaml_python_tag_refused(tmp_path):
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.yaml"
    f.write_text(f'experiment: !!python/object/apply:os.system ["touch {marker}"]\n', encoding="utf-8")
    with pytest.raises(InputError) as e:
        params.load(f)
    assert str(f) in str(e.value)
    assert not marker.exists()


def test_malformed_yaml_names_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train: [1, 2\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        params.load(f)
    assert str(f) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        params.load(tmp_path / "nope.yaml")


def test_empty_yaml_gives_defaults(tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("# nothing\n", encoding="utf-8")
    assert params.load(f) == params.load(None)


def test_invalid_value_in_file_names_file_and_key(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"active": {"budget": 0}}), encoding="utf-8")
    with pytest.raises(InputError) as e:
        params.load(f)
    assert str(f) in str(e.value) and "active.budget" in str(e.value)


def test_inline_json_accepted():
    p = params.load(json.dumps({"active": {"budget": 7}, "train": {"lr": 0.5}}))
    assert p["active"]["budget"] == 7
    assert p["train"]["lr"] == 0.5
    assert p["train"]["epochs"] == 30
    p = params.load('  {"experiment": "x1"}')
    assert p["experiment"] == "x1"


def test_inline_json_invalid_key_named():
    with pytest.raises(InputError, match=r"train\.lrr"):
        params.load('{"train": {"lrr": 1}}')


def test_malformed_inline_json():
    with pytest.raises(InputError, match="malformed JSON"):
        params.load('{"train": {"lr": 1}')


# ------------------------------------------------------------ schema itself
def _walk(node: dict, where: str):
    for name, sub in node.get("properties", {}).items():
        yield f"{where}{name}", sub
        yield from _walk(sub, f"{where}{name}.")
    for name, sub in node.get("$defs", {}).items():
        yield from _walk(sub, f"$defs.{name}.")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{where}[]")


def test_schema_every_property_has_type_description_default():
    schema = params.load_schema()
    props = list(_walk(schema, ""))
    assert len(props) > 60  # the walk really recursed
    names = {n for n, _ in props}
    assert {"dataset.digit_scenes.n_pool", "resources.train", "$defs.resources.threads",
            "strategies.coreset.feature_levels"} <= names
    bad = []
    for name, sub in props:
        missing = [k for k in ("description", "default") if k not in sub]
        if "type" not in sub and "$ref" not in sub:
            missing.append("type/$ref")
        if missing:
            bad.append(f"{name}: {missing}")
    assert not bad, bad


def test_schema_defaults_are_valid():
    """Each property's own default validates against that property's schema."""
    import jsonschema

    schema = params.load_schema()
    for name, sub in _walk(schema, ""):
        jsonschema.Draft202012Validator({**sub, "$defs": schema["$defs"]}).validate(sub["default"])


def test_schema_objects_refuse_unknown_keys():
    schema = params.load_schema()

    def objects(node, where):
        if node.get("type") == "object":
            yield where, node
        for name, sub in node.get("properties", {}).items():
            yield from objects(sub, f"{where}.{name}")
        for name, sub in node.get("$defs", {}).items():
            yield from objects(sub, f"$defs.{name}")

    for where, node in objects(schema, "(top)"):
        if where == "(top).variants":  # a map of names: each entry's schema refuses unknown keys
            entry = node["additionalProperties"]
            assert entry["additionalProperties"] is False and entry["required"] == ["strategy"]
            continue
        if where == "(top).variants.options":  # validated against the varied strategy's own schema
            continue
        assert node.get("additionalProperties") is False, where


def test_variants_are_checked_against_their_strategy():
    ok = params.load({"variants": {"m2": {"strategy": "miaod", "options": {"lambda": 2.0}}},
                      "active": {"strategies": ["random", "m2"]}})
    assert ok["variants"]["m2"]["options"] == {"lambda": 2.0}
    for bad, needle in ((({"m2": {"strategy": "miaod", "options": {"lambdaa": 2.0}}}), "variants.m2.options: unknown option(s) lambdaa"),
                        (({"m2": {"strategy": "miaod", "options": {"lambda": "big"}}}), "variants.m2.options: lambda"),
                        (({"m2": {"strategy": "nope"}}), "variants.m2.strategy: unknown strategy 'nope'"),
                        (({"random": {"strategy": "entropy"}}), "variants.random"),
                        (({"a.b": {"strategy": "entropy"}}), "a.b")):
        with pytest.raises(InputError, match=None) as e:
            params.load({"variants": bad})
        assert needle in str(e.value)
    with pytest.raises(InputError) as e:
        params.load({"active": {"strategies": ["m3"]}})
    assert "unknown strategy m3" in str(e.value)
