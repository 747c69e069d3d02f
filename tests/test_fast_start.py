"""A CLI that starts fast: detector families and heavy libraries are imported only when used."""
from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import numpy as np

import noveltykit.detectors as nd
from noveltykit.detectors.registry import FAMILIES

HEAVY = ("sklearn", "matplotlib", "fastapi", "ray", "scipy", "noveltykit.detectors.pretrained")


def _modules_after(code: str) -> list[str]:
    """The HEAVY modules a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def test_the_family_table_is_what_the_family_modules_register():
    for info in pkgutil.iter_modules(nd.__path__):
        importlib.import_module(f"noveltykit.detectors.{info.name}")
    registered = {name: nd.detector_class(name).__module__.rsplit(".", 1)[1] for name in nd.available()
                  if nd.detector_class(name).__module__.startswith("noveltykit.detectors.")}
    assert registered == FAMILIES


def test_scoring_with_a_knn_model_imports_no_heavy_library(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (40, 1, 8, 8), dtype=np.uint8)
    nd.make("knn").fit(x[:30], x[30:]).save(tmp_path / "m")
    from PIL import Image
    Image.fromarray(x[0, 0]).save(tmp_path / "a.png")
    code = (f"from noveltykit.cli import main\n"
            f"assert main(['score', {str(tmp_path / 'm')!r}, {str(tmp_path / 'a.png')!r}, '--quiet']) == 0")
    assert _modules_after(code) == []


def test_the_cli_and_its_help_import_neither_torch_nor_heavy_libraries():
    code = ("import contextlib, io, sys\nfrom noveltykit.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules, 'torch imported for --help'")
    assert _modules_after(code) == []


def test_a_family_is_imported_when_one_of_its_detectors_is_asked_for():
    assert _modules_after("import noveltykit.detectors as nd\nnd.make('knn')") == []
    assert "noveltykit.detectors.pretrained" in _modules_after(
        "import noveltykit.detectors as nd\nnd.detector_class('feat-knn')")


def test_the_allocator_settings_apply_unless_the_user_set_them(monkeypatch):
    from noveltykit.allocator import OFF, SETTINGS, keep_freed_memory
    monkeypatch.setenv(OFF, "0")
    assert keep_freed_memory() == {}
    monkeypatch.delenv(OFF)
    monkeypatch.setenv("MALLOC_TOP_PAD_", "0")  # the user's own setting wins: not applied over it
    applied = keep_freed_memory()
    if sys.platform.startswith("linux") and applied:  # glibc: every other setting was accepted
        assert applied == {env: True for env in SETTINGS if env != "MALLOC_TOP_PAD_"}
