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
    # the default is the converged regime the comparison of configs/regime_unfrozen_x2.yaml runs on
    recipe = (base["detector"]["frozen_stages"], base["train"]["min_iterations"], base["train"]["epochs"])
    assert recipe == (-1, 2400, 192)
    assert (x2["detector"]["frozen_stages"], x2["train"]["min_iterations"], x2["train"]["epochs"]) == recipe
    assert x2["train"]["lr"] == base["train"]["lr"] and x2["detector"]["channels"] == base["detector"]["channels"]
    assert set(base["active"]["strategies"]) < set(x2["active"]["strategies"]) and len(x2["active"]["seeds"]) == 5
    assert x2["variants"]["miaod_plain_eval"] == {"strategy": "miaod", "options": {"eval_detector": "plain"}}
    assert (lr04["detector"]["frozen_stages"], lr04["train"]["lr"]) == (-1, 0.04)
    assert (lr04["train"]["min_iterations"], lr04["train"]["epochs"]) == (1200, 96)


@pytest.mark.parametrize("name", ["regime_random.yaml", "regime_random_unfrozen.yaml"])
def test_the_former_regime_configs_name_the_recipe_their_committed_results_were_made_with(name):
    """Made when the default trained half today's iterations (and froze the stem and stage 1): they name that
    recipe, so their commands still reproduce their results."""
    frozen = yaml.safe_load((ROOT / "configs" / "regime_frozen.yaml").read_text())
    assert frozen == {"detector": {"frozen_stages": 1}, "train": {"epochs": 96, "min_iterations": 1200}}
    c = config_params(name)
    assert (c["train"]["epochs"], c["train"]["min_iterations"]) == (96, 1200)
    assert c["detector"]["frozen_stages"] == (1 if name == "regime_random.yaml" else -1)


def test_regime_frozen_before_a_generic_overlay_restores_the_former_default():
    """configs/five_seeds.yaml follows the default; with configs/regime_frozen.yaml before it, it is the run of
    docs/results/default_five_seeds/ again."""
    now, former = config_params("five_seeds.yaml"), config_params("regime_frozen.yaml", "five_seeds.yaml")
    assert (now["detector"]["frozen_stages"], now["train"]["epochs"], now["train"]["min_iterations"]) == (-1, 192, 2400)
    assert (former["detector"]["frozen_stages"], former["train"]["epochs"], former["train"]["min_iterations"]) \
        == (1, 96, 1200)
    assert former["active"]["seeds"] == now["active"]["seeds"] == [0, 1, 2, 3, 4]
    assert {k: v for k, v in former.items() if k not in ("detector", "train")} == \
        {k: v for k, v in now.items() if k not in ("detector", "train")}
