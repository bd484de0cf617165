"""The experiment configurations of configs/ (the --configfile overlays the docs give for each committed result):
each validates over params.yaml merged the way Snakemake merges it, and the regime configurations change only
the keys they name."""
import pytest
import yaml

from helpers.pipeline import ROOT, config_params


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_experiment_config_validates_over_params(name):
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    over = yaml.safe_load((ROOT / "configs" / name).read_text())
    assert config_params(name)["experiment"] == over.get("experiment", base["experiment"])


def test_the_regime_configs_keep_the_default_recipe_except_what_they_name():
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    x2, lr04 = config_params("regime_unfrozen_x2.yaml"), config_params("regime_random_unfrozen_lr04.yaml")
    assert (x2["detector"]["frozen_stages"], x2["train"]["min_iterations"], x2["train"]["epochs"]) == (-1, 2400, 192)
    assert x2["train"]["lr"] == base["train"]["lr"] and x2["detector"]["channels"] == base["detector"]["channels"]
    assert set(base["active"]["strategies"]) < set(x2["active"]["strategies"]) and len(x2["active"]["seeds"]) == 5
    assert x2["variants"]["miaod_plain_eval"] == {"strategy": "miaod", "options": {"eval_detector": "plain"}}
    assert (lr04["detector"]["frozen_stages"], lr04["train"]["lr"]) == (-1, 0.04)
    assert lr04["train"]["min_iterations"] == base["train"]["min_iterations"]
