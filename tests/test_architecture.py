"""The house rules that a machine can check: the layers (import-linter, `.importlinter`), no family
knowledge outside the family, one name per file. docs/architecture.md says what they are for."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import noveltykit
from noveltykit.detectors import available, detector_class

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(noveltykit.__file__).resolve().parent
LINT = Path(sys.executable).parent / "lint-imports"
# the code that must ask the detector contract only, never know a family
CONTRACT_ONLY = ("experiments", "probes", "analysis")


def _lint(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    if not LINT.exists():
        pytest.fail(f"{LINT} missing: import-linter is part of the dev extra (make test installs it)")
    return subprocess.run([str(LINT), "--no-cache", "--config", str(ROOT / ".importlinter")], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


def test_the_layers_hold():
    run = _lint(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize("module, line, expect", [
    ("analysis/metrics.py", "from ..experiments import bench  # analysis above the runner",
     "noveltykit.analysis.metrics -> noveltykit.experiments.bench"),
    ("apply/fit.py", "from ..experiments import bench  # two siblings",
     "noveltykit.apply.fit -> noveltykit.experiments.bench"),
    ("apply/score_page.py", "from .score import expand  # the cycle score <-> score page, as it was",
     ".score_page -> .score"),
])
def test_a_wrong_import_breaks_a_contract_and_names_the_line(tmp_path, module, line, expect):
    copy = tmp_path / "src" / "noveltykit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / module
    path.write_text(path.read_text() + f"\n{line}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}
    run = _lint(tmp_path, env)
    assert run.returncode != 0
    assert expect in run.stdout, run.stdout
    assert "BROKEN" in run.stdout


def _family_modules() -> set[str]:
    """The modules that register detectors: `noveltykit.detectors.<family>`."""
    return {detector_class(name).__module__ for name in available()}


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, module or module.name) of every import in a file, relative ones resolved."""
    package = module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names] + [(node.lineno, base)]
    return found


def _contract_only_files():
    for folder in CONTRACT_ONLY:
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            rel = path.relative_to(PACKAGE.parent).with_suffix("")
            yield path, ".".join(rel.parts)


def _family_knowledge(path: Path, module: str) -> list[str]:
    """What a file knows of detector families: imports of a family's module, a detector's name in a
    string, an isinstance test of a detector class, a call of a private scoring method."""
    families, names = _family_modules(), set(available())
    problems = []
    for line, target in _imports(path, module):
        family = next((f for f in families if target == f or target.startswith(f + ".")), None)
        if family and f"{path.name}:{line} imports the family module {family}" not in problems:
            problems.append(f"{path.name}:{line} imports the family module {family}")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            head = node.value.split(":", 1)[0]
            if head in names and (node.value == head or ":" in node.value):
                problems.append(f"{path.name}:{node.lineno} names the detector {node.value!r}")
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("isinstance", "issubclass"):
            kinds = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
            if "Detector" in kinds:
                problems.append(f"{path.name}:{node.lineno} checks a detector class: {ast.unparse(node)}")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_score"):
            problems.append(f"{path.name}:{node.lineno} calls the private {node.attr}")
    return problems


def test_runner_probes_and_reports_know_no_family():
    files = list(_contract_only_files())
    assert {m for _, m in files} >= {"noveltykit.experiments.bench", "noveltykit.probes.attacks",
                                     "noveltykit.analysis.report"}
    assert [p for path, module in files for p in _family_knowledge(path, module)] == []


def test_the_family_check_catches_what_the_runner_used_to_do(tmp_path):
    """The check above can fail: the teacher-cache test by name and the probes' class test and
    private call, as they stood before the contract said what a detector needs, are all caught."""
    bad = tmp_path / "bench.py"
    bad.write_text("from ..detectors.certainty import CertaintyDetector\n"
                   'teachers = any(spec.detector == "kdgan" for spec in methods)\n'
                   "ok = isinstance(det, CertaintyDetector)\n"
                   "out = det._score_batch(module, x)\n")
    found = _family_knowledge(bad, "noveltykit.experiments.bench")
    assert sorted(found) == ["bench.py:1 imports the family module noveltykit.detectors.certainty",
                             "bench.py:2 names the detector 'kdgan'",
                             "bench.py:3 checks a detector class: isinstance(det, CertaintyDetector)",
                             "bench.py:4 calls the private _score_batch"]


def test_every_file_name_is_used_once():
    names = Counter(p.name for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert [n for n, k in names.items() if k > 1] == []
