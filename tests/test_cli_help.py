"""Help that explains: every command's --help has a description, an example and its defaults, as a
newcomer runs it (`python -m noveltykit.cli`, in a process of its own); --dataset lists the
datasets; sweep takes --classes all; `noveltykit report` shows the runs first, the published values
apart."""
import argparse
import json
import os
import re
import subprocess
import sys

import pytest

from noveltykit.cli import build_parser
from noveltykit.cli.help_text import DATASET_NAMES as LISTED_IN_HELP
from noveltykit.cli.help_text import HelpFormatter

from conftest import make_blobs_dataset


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = _commands()


def _cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "noveltykit.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "100", "NOVELTYKIT_OFFLINE": "1"})


def _flat(text: str) -> str:
    return " ".join(text.split())


def _shown_default(action: argparse.Action) -> str | None:
    """What an option's help should show as its default; None where there is nothing to show."""
    shown = HelpFormatter._default_text(action)
    return None if shown is None else shown.replace("%(default)s", str(action.default)).replace("%%", "%")


def _entries(help_text: str) -> dict[str, str]:
    """Each option's block of the help, by its option strings ('--seeds', '-v', ...)."""
    section = help_text.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    entries = {}
    for block in re.split(r"\n(?=  -)", section):
        invocation = block.strip().split("  ")[0].split("\n")[0]  # "--verbose, -v" or "--seeds SEEDS"
        for option in re.findall(r"(?:^|, )(-{1,2}[\w-]+)", invocation):
            entries[option] = _flat(block)
    return entries


def test_every_command_is_covered():
    assert set(COMMANDS) >= {"data", "bench", "sweep", "report", "profile", "distill", "export", "set-threshold",
                             "probe", "linear-gan", "fit", "score", "serve", "detectors"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_has_a_description_an_example_and_the_defaults(name):
    parser = COMMANDS[name]
    done = _cli(name, "--help")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # a description, between the usage and the arguments
    assert parser.description and len(parser.description.split()) >= 8, f"{name}: no description"
    assert _flat(parser.description)[:60] in _flat(out)
    # an example: an `example:` epilog, its commands on lines of their own, unwrapped
    assert parser.epilog and "example:" in out
    examples = out.split("\nexample:\n", 1)[1].splitlines()
    assert any(line.startswith(f"  noveltykit {name}") for line in examples), examples
    assert all(line.startswith("  ") for line in examples if line.strip())
    # every option with a default shows it; none shows "None" or a flag's "False"
    entries = _entries(out)
    for action in parser._actions:
        shown = _shown_default(action)
        if shown is None or not action.option_strings:
            continue
        entry = entries[action.option_strings[0]]
        if action.help and "(default" in action.help:  # the help says it in its own words
            assert "(default" in entry, (name, entry)
        else:
            assert f"(default: {shown})" in entry, f"{name} {action.option_strings[0]}: no default in {entry!r}"
    assert "(default: None)" not in out and "(default: False)" not in out and "(default: [])" not in out


def test_the_defaults_a_newcomer_had_to_read_from_the_source():
    bench = _flat(_cli("bench", "--help").stdout)
    for option, default in (("--classes", "all"), ("--seeds", "0"), ("--protocol", "one-vs-rest"),
                            ("--val-fraction", "0.1"), ("--executor", "serial")):
        assert re.search(rf"{option} \S+ .*?\(default: {re.escape(default)}\)", bench), option
    threshold = _cli("set-threshold", "--help")
    assert threshold.returncode == 0 and "example:" in threshold.stdout
    assert COMMANDS["set-threshold"].description.split()[0] in threshold.stdout


def test_dataset_help_lists_the_datasets_load_dataset_knows():
    from noveltykit.data import DATASET_NAMES
    assert tuple(LISTED_IN_HELP) == tuple(DATASET_NAMES)
    with_dataset = [n for n, p in COMMANDS.items() if any("--dataset" in a.option_strings for a in p._actions)]
    assert set(with_dataset) >= {"data", "bench", "sweep", "distill", "probe"}
    for name in with_dataset:
        entry = _entries(_cli(name, "--help").stdout)["--dataset"]
        for dataset in (*DATASET_NAMES, "folder:PATH"):
            assert dataset in entry, f"{name} --dataset help lacks {dataset}: {entry!r}"


def test_sweep_takes_classes_all_and_an_unknown_dataset_fails_with_the_loaders_message(tmp_path):
    """`--classes all` passes the parser and the config, and `--dataset` stays a free string: an
    unknown name is refused by the loader, with its list of names (exit status 2)."""
    done = _cli("sweep", "--dataset", "nosuch", "--method", "knn", "--grid", "k=1,5", "--classes", "all",
                "--out", str(tmp_path / "sw"), "--quiet", timeout=300)
    assert done.returncode == 2
    assert "argument --classes" not in done.stderr
    assert "unknown dataset 'nosuch'; valid names: mnist" in done.stderr and "folder:PATH" in done.stderr
    bad = _cli("sweep", "--dataset", "mnist", "--method", "knn", "--grid", "k=1", "--classes", "some",
               "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "expected 'all' or comma-separated class indices" in bad.stderr


def test_sweep_classes_all_is_every_class_and_the_same_sweep_as_their_list(tmp_path, monkeypatch, capsys):
    from noveltykit.cli import main
    monkeypatch.setattr("noveltykit.data.load_dataset", lambda *a, **k: make_blobs_dataset(n_train=40))
    out = tmp_path / "sw"
    line = ["sweep", "--dataset", "blobs", "--method", "knn", "--variant", "knn:k=1", "--image-size", "8",
            "--out", str(out), "--quiet", "--classes"]
    assert main([*line, "all"]) == 0
    first = json.loads((out / "sweep.json").read_text())
    assert first["config"]["classes"] == [0, 1, 2] and list(first["data"]["classes"]) == ["0", "1", "2"]
    assert main([*line, "0,1,2"]) == 0  # the list `all` stood for: the same sweep, resumed
    assert json.loads((out / "sweep.json").read_text())["points"] == first["points"]
    capsys.readouterr()
    assert main([*line, "0,1"]) == 2 and "differs in classes" in capsys.readouterr().err


def test_report_prints_the_runs_first_and_the_published_values_apart(tmp_path):
    cell = {"dataset": "mnist", "protocol": "one-vs-rest", "method": "knn", "aupr": 0.9, "fpr95": 0.1,
            "val_fraction": 0.1, "params": {}, "fit_seconds": 1.0, "score_seconds": 1.0, "n_test": 100,
            "test_fpr_at_threshold": 0.05, "test_tpr_at_threshold": 0.9}
    results = [{**cell, "class": c, "class_name": str(c), "seed": 0, "auroc": 0.9} for c in range(10)]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps({"results": results}))
    done = _cli("report", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    ours, published = done.stdout.split("Published (not rerun here)")
    assert ours.splitlines()[0] == "| class | knn |" and "| **MEAN** | **0.9000** |" in ours
    assert "OCSVM" not in ours and "| class | OCSVM | KDE | VAE | DSVDD | OCGAN | P-KDGAN teacher |" in published
    assert "| **MEAN** | 0.9513 |" in published
    table_md = (tmp_path / "run" / "table.md").read_text()  # rebuilt, in the same layout
    assert table_md.index("| class | knn |") < table_md.index("Published (not rerun here)") < table_md.index("OCSVM")
    without = _cli("report", str(tmp_path / "run"), "--no-paper")
    assert without.returncode == 0 and "Published" not in without.stdout and "OCSVM" not in without.stdout
