"""The code's structure (issue 18): no import cycle in src/, no module over 400 lines (digit_scenes.py aside), no
function over 80, the CLI a package, a README of at most 150 lines, no path into the shared folder in any
tracked file, and one training rule in the workflow.

Each check is a function of tests/helpers/architecture.py, run on a small tree of its own here first."""
import subprocess
import sys
import textwrap

import pytest

from helpers.architecture import (FOLDER, identical_rules, import_cycles, import_graph, long_functions, long_modules,
                                  shared_folder_references, smk_rules, text_of)
from helpers.pipeline import ROOT

SRC = ROOT / "src"
MODULE_LINES, FUNCTION_LINES, README_LINES = 400, 80, 150
LONG_MODULES_ALLOWED = [SRC / "activedet" / "data" / "digit_scenes.py"]
OWN_TRAINERS = {"train_miaod", "train_ll4al", "train_eval_detector"}


def write_tree(root, files: dict):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


# ------------------------------------------------------------------ the checks on trees of their own
def test_import_graph_counts_every_kind_of_import(tmp_path):
    src = write_tree(tmp_path / "src", {
        "pkg/__init__.py": "from .a import f\nfrom . import sub\n",
        "pkg/a.py": """\
            import os
            from . import b


            def f():
                from pkg.sub import deep
                return deep
            """,
        "pkg/b.py": "X = 1\nfrom pkg.b import X as Y\n",  # itself: no edge
        "pkg/sub/__init__.py": "NAME = 1\n",
        "pkg/sub/deep.py": "from ..b import X\nimport pkg.sub\nfrom . import NAME\n",
        "pkg/sub/other.py": """\
            class C:
                def m(self):
                    from .deep import thing
                    from .. import b
            """,
        "plug/__init__.py": "import pkg.a\nimport numpy\n",
        "pkg.egg-info/setup.py": "import pkg\n",  # not a package
    })
    assert import_graph(src) == {
        "pkg": {"pkg.a", "pkg.sub"},
        "pkg.a": {"pkg.b", "pkg.sub.deep"},       # `from . import b` imports b, not pkg's __init__
        "pkg.b": set(),
        "pkg.sub": set(),
        "pkg.sub.deep": {"pkg.b", "pkg.sub"},     # NAME is a name of pkg.sub's __init__
        "pkg.sub.other": {"pkg.sub.deep", "pkg.b"},
        "plug": {"pkg.a"},
    }
    assert import_cycles(import_graph(src)) == []


def test_import_cycles_are_found_through_functions_and_package_names(tmp_path):
    src = write_tree(tmp_path / "src", {
        "pkg/__init__.py": "from .a import f\n",
        "pkg/a.py": "def f():\n    from .b import g\n    return g\n",
        "pkg/b.py": "from pkg import f\n\n\ndef g():\n    pass\n",  # f is a name of pkg's __init__
        "pkg/c.py": "from . import d\n",
        "pkg/d.py": "def h():\n    import pkg.c\n",
        "pkg/e.py": "from . import c\n",  # imports a cycle, is in none
    })
    assert import_cycles(import_graph(src)) == [["pkg", "pkg.a", "pkg.b", "pkg"], ["pkg.c", "pkg.d", "pkg.c"]]
    assert import_cycles({"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"a"}}) == [["a", "b", "c", "a"]]


def test_long_modules_and_functions_are_found(tmp_path):
    src = write_tree(tmp_path / "src", {
        "pkg/__init__.py": "",
        "pkg/short.py": "x = 1\n" * 10,
        "pkg/long.py": "x = 1\n" * 11,
        "pkg/allowed.py": "x = 1\n" * 30,
    })
    assert long_modules(src, 10, allowed=[src / "pkg" / "allowed.py"]) == ["src/pkg/long.py: 11 lines"]
    src = write_tree(tmp_path / "other" / "src", {
        "pkg/funcs.py": """\
            import functools


            @functools.cache
            def three():
                a = 1
                return a


            def four():
                def inner():
                    b = 2
                    c = 3
                    return b + c
                return inner


            class K:
                async def method(self):
                    a = 1
                    b = 2
                    return a + b
            """,
    })
    assert long_functions(src, 3) == ["src/pkg/funcs.py:10 four: 6 lines", "src/pkg/funcs.py:11 inner: 4 lines",
                                      "src/pkg/funcs.py:19 method: 4 lines"]  # a decorator is no line of three
    assert long_functions(src, 6) == []


def test_shared_folder_references_are_paths_not_words(tmp_path):
    text = "\n".join(line.replace("SHARED", FOLDER) for line in [
        "SHARED/specs/mi-aod.md at the start",          # 1
        "see SHARED/specs/x.md",                        # 2
        "in `SHARED/papers/mgral.txt`",                 # 3
        "open('SHARED/a') or \"SHARED/b\"",              # 4
        "(SHARED/specs/x.md)",                          # 5
        "a link to ../SHARED/x and ../../SHARED/y",     # 6
        "\tSHARED/after-a-tab",                         # 7
        "the SHARED folder, SHARED data",               # no slash
        "data/SHARED/x, notSHARED/x, my-SHARED/x",      # part of another path or name
        "SHARED_data/x and SHAREDx/",                   # another name
    ])
    assert shared_folder_references(text) == [1, 2, 3, 4, 5, 6, 7]
    (tmp_path / "text.md").write_text(text, encoding="utf-8")
    (tmp_path / "nul.bin").write_bytes(b"\x89PNG\0" + FOLDER.encode() + b"/x")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 " + FOLDER.encode() + b"/x")
    assert text_of(tmp_path / "text.md") == text
    assert text_of(tmp_path / "nul.bin") is None and text_of(tmp_path / "latin1.txt") is None
    assert text_of(tmp_path) is None


def test_snakemake_rules_and_identical_bodies():
    text = textwrap.dedent("""\
        # a comment
        X = 1


        rule a:
            input:
                "x",
            # a comment is no part of the body
            shell:
                "cp {input} {output}"


        ruleorder: a > b
        rule b:
            input:
                "x",

            shell:
                "cp {input} {output}"<2 spaces>
        def helper():
            return 1


        rule c :
            shell:
                "true"
        localrules: a
        """).replace("<2 spaces>", "  ")
    rules = smk_rules(text)
    assert rules == {"a": '    input:\n        "x",\n    shell:\n        "cp {input} {output}"',
                     "b": '    input:\n        "x",\n    shell:\n        "cp {input} {output}"',
                     "c": '    shell:\n        "true"'}
    assert identical_rules(rules) == [["a", "b"]]
    assert identical_rules({"a": "x", "b": "y"}) == []


# ------------------------------------------------------------------ the repository
def test_src_imports_have_no_cycle():
    cycles = import_cycles(import_graph(SRC))
    assert not cycles, "import cycles in src/:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_is_over_400_lines():
    long = long_modules(SRC, MODULE_LINES, allowed=LONG_MODULES_ALLOWED)
    assert not long, f"modules over {MODULE_LINES} lines:\n" + "\n".join(long)


def test_no_function_is_over_80_lines():
    long = long_functions(SRC, FUNCTION_LINES)
    assert not long, f"functions over {FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_the_cli_is_a_package():
    assert not (SRC / "activedet" / "cli.py").exists(), "src/activedet/cli.py is a module; the CLI is a package"
    assert (SRC / "activedet" / "cli" / "__init__.py").is_file(), "src/activedet/cli/__init__.py is missing"


def test_readme_is_at_most_150_lines():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_LINES, f"README.md has {n} lines, at most {README_LINES}"


def test_no_tracked_file_refers_to_the_shared_folder():
    p = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"not a git checkout: {p.stderr.strip()}")
    found = []
    for name in filter(None, p.stdout.split("\0")):
        text = text_of(ROOT / name)
        if text is not None:
            found += [f"{name}:{n}: {text.splitlines()[n - 1].strip()[:120]}" for n in shared_folder_references(text)]
    assert not found, f"tracked files that refer to {FOLDER}/:\n" + "\n".join(found)


def workflow_rules() -> dict[str, str]:
    rules = {}
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        rules.update(smk_rules(path.read_text(encoding="utf-8")))
    assert rules, "no rule found in workflow/rules/*.smk"
    return rules


def test_the_workflow_has_one_training_rule():
    others = sorted(OWN_TRAINERS & set(workflow_rules()))
    assert not others, f"training rules besides the one: {others}"


def test_no_two_workflow_rules_are_identical():
    same = identical_rules(workflow_rules())
    assert not same, f"rules with identical bodies: {same}"


def test_the_library_imports_without_the_pipeline_tools():
    """`pip install activedet` (no [pipeline] extra): every module of the library imports with Snakemake and DVC
    absent."""
    code = textwrap.dedent("""\
        import importlib, pkgutil, sys
        for name in ("snakemake", "dvc", "snakemake_executor_plugin_slurm"):
            sys.modules[name] = None  # an import of it fails as if it were not installed
        import activedet
        for m in pkgutil.walk_packages(activedet.__path__, "activedet."):
            if m.name == "activedet.__main__":  # runs the CLI
                continue
            importlib.import_module(m.name)
        """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
