"""Paper tables: every published row is printed, ours beside it from the mapped variant."""
import pandas as pd
import pytest

from activedet.paper.tables import (TABLES, build_table, read_paper, row_strategies, strategies_needed, to_markdown,
                                   write_tables)

from helpers.pipeline import config_params


def fake_curves(strategies):
    rows = []
    for k, s in enumerate(strategies):
        for seed in (0, 1):
            for c, frac in enumerate((0.05, 0.10)):
                rows.append({"strategy": s, "seed": seed, "cycle": c, "fraction": frac,
                             "map50": 0.1 * (c + 1) + 0.01 * k + 0.02 * seed})
    return pd.DataFrame(rows)


def test_every_paper_row_appears_with_ours_beside_it():
    for name, spec in TABLES.items():
        paper = read_paper(spec["paper"])
        ran = strategies_needed(name)
        df = build_table(fake_curves(ran), name)
        assert (df["source"].str.startswith("paper")).sum() == len(paper)
        ours = df[df["source"].str.startswith("ours")]
        assert len(ours) == sum(len(row_strategies(name, key)) for key in spec["rows"])
        # mean ± std over the two seeds at 5%: 0.1 + 0.01 k + {0, 0.02} -> mean +0.01, std 0.0141
        k = ran.index(row_strategies(name, tuple(str(paper.iloc[0][c]) for c in spec["keys"]))[0])
        first = ours.iloc[0]
        assert first["ours 5%"] == f"{100 * (0.11 + 0.01 * k):.1f} ± 1.4"
        assert "2 seeds" in first["source"]
        assert "| paper" in to_markdown(df, spec["title"])


def test_w1_rows_report_the_uniform_and_the_raw_weight_under_the_same_paper_row():
    for name, key in (("miaod_table1", ("1", "0", "mean_uncertainty")), ("miaod_table3", ("1", "labeled"))):
        df = build_table(fake_curves(strategies_needed(name)), name)
        keys = TABLES[name]["keys"]
        rows = df[(df[keys].astype(str).apply(tuple, axis=1) == key) & df["source"].str.startswith("ours")]
        variants = [s.split("(")[1].split(",")[0] for s in rows["source"]]
        assert len(variants) == 2 and variants[1] == variants[0] + "_raw"
    params = config_params("miaod_ablation.yaml")
    assert params["variants"]["t1_iul1_iur0_mean_raw"]["options"] == {"iur": False, "weight": "one_raw"}
    assert params["variants"]["t3_w1_labeled"]["options"]["weight"] == "one"


def test_missing_runs_say_so_and_files_are_written(tmp_path):
    curves = fake_curves(["miaod"])
    curves.to_csv(tmp_path / "curves.csv", index=False)
    paths = write_tables(tmp_path / "curves.csv", tmp_path / "tables", ["miaod_table4"])
    assert sorted(p.name for p in paths) == ["miaod_table4.csv", "miaod_table4.md"]
    text = (tmp_path / "tables" / "miaod_table4.md").read_text()
    assert "t4_lambda2: not run" in text and "ours (miaod, 2 seeds)" in text


def test_ablation_config_defines_every_variant_the_tables_need():
    params = config_params("miaod_ablation.yaml")
    needed = set().union(*(strategies_needed(t) for t in TABLES if t.startswith("miaod_")))
    assert needed <= set(params["active"]["strategies"])
    assert params["variants"]["t4_k13"]["options"] == {"topk": 13}


def test_mgral_config_defines_the_records_variants_of_table3():
    params = config_params("mgral_tables.yaml")
    assert set(strategies_needed("mgral_table3")) <= set(params["active"]["strategies"])
    assert "random" in params["active"]["strategies"] and len(params["active"]["seeds"]) >= 3
    # the paper's 50 / 100 / 200 records keep their 1 : 2 : 4 ratio
    rows = TABLES["mgral_table3"]["rows"]
    records = {k[0]: params["strategies"]["mgral"]["records"] if v == "mgral" else params["variants"][v]["options"]["records"]
               for k, v in rows.items()}
    assert records == {"50": 2, "100": 4, "200": 8}


@pytest.mark.parametrize("name", ["eval_plain.yaml", "eval_plain_five_seeds.yaml", "miaod_five_seeds.yaml"])
def test_eval_plain_configs_validate_and_judge_miaod_with_the_plain_detector(name):
    from activedet.strategies import resolve

    params = config_params(name)
    assert {"random", "miaod_plain_eval"} <= set(params["active"]["strategies"])
    assert resolve("miaod_plain_eval", params) == ("miaod", {**params["strategies"]["miaod"], "eval_detector": "plain"})
    assert params["strategies"]["miaod"]["eval_detector"] == "own"  # the default strategy keeps its own detector
