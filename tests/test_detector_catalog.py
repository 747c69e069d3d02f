"""Which detector? The README's decision guide and `noveltykit detectors`: one line a detector with
what it is, what it needs and its measured cost; everything it says comes from the detectors'
own contract and from measured costs."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import noveltykit.detectors as nd
from noveltykit.detectors.catalog import COSTS_FILE
from noveltykit.detectors.specs import MethodSpec

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIGURE = re.compile(r"\b0\.\d{4}\b")  # an AUROC as the docs print it

# the package's own detectors: other tests register plugin detectors in this process too
BUILT_IN = [n for n in nd.available() if nd.detector_class(n).__module__.startswith("noveltykit.")]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "noveltykit.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def doc_section(path: Path, anchor: str) -> str:
    """The text of the heading with this anchor, down to the next heading of its level or above."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"(#+) (.*)", line)
        if m and github_slug(m.group(2)) == anchor:
            level, body = len(m.group(1)), []
            for rest in lines[i + 1:]:
                n = re.match(r"(#+) ", rest)
                if n and len(n.group(1)) <= level:
                    break
                body.append(rest)
            return "\n".join(body)
    raise AssertionError(f"{path.name} has no heading with the anchor #{anchor}")


def guide_rows() -> list[list[str]]:
    """The cells of the README's decision-guide table (header and rule left out)."""
    text = README.read_text()
    assert "\n## Which detector?\n" in text, "the README has no '## Which detector?' section"
    section = text.split("\n## Which detector?\n", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|")]
    assert rows and rows[0][:2] == ["your images", "start with"], "the guide's table is missing or reshaped"
    return rows[2:]


def specs_in(cell: str) -> list[str]:
    """The backticked method specs of a cell (`mc_samples=30`, a bare parameter, is none)."""
    return [t for t in re.findall(r"`([^`]+)`", cell) if "=" not in t.split(":", 1)[0]]


def test_every_detector_says_what_it_is_and_needs():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for name in BUILT_IN:
        cls = nd.detector_class(name)
        assert cls.summary and "\n" not in cls.summary and len(cls.summary) <= 60, \
            f"{name}: set `summary` in its family module, one line of at most 60 characters"
        assert set(cls.extras) <= extras, f"{name}: extras {cls.extras} are not in pyproject's optional-dependencies"
    assert nd.detector_class("feat-gauss").extras == ("pretrained",)
    assert nd.detector_class("ede-gan").trains_network and not nd.detector_class("knn").trains_network


def test_every_detector_has_a_measured_cost():
    costs = json.loads(COSTS_FILE.read_text())
    measured = costs["measured"]
    assert measured["cpu"] and measured["command"].startswith("python benchmarks/detector_costs.py")
    for name in BUILT_IN:
        own = costs["detectors"].get(name)
        assert own and own["fit_s"] > 0 and own["score_s"] > 0, (
            f"{name} has no measured cost in {COSTS_FILE.relative_to(ROOT)}: run "
            f"`python benchmarks/detector_costs.py --only {name}` (one thread; it adds {name} to the file) "
            "and ship the file with the detector")


def test_detectors_prints_one_line_each():
    out = cli("detectors")
    assert out.returncode == 0, out.stderr
    listing, _, note = out.stdout.partition("\n\n")
    lines = listing.splitlines()
    assert [line.split()[0] for line in lines] == BUILT_IN, "one line a registered detector, by name"
    for name, line in zip(BUILT_IN, lines):
        cls = nd.detector_class(name)
        assert cls.summary in line
        assert ("trains a network" in line) == cls.trains_network and ("no training" in line) != cls.trains_network
        assert ("needs labels" in line) == cls.uses_labels
        assert ("needs [pretrained]" in line) == ("pretrained" in cls.extras)
        assert re.search(r"fit [\d.]+x +score [\d.]+x$", line), f"no measured cost on {line!r}"
    assert re.match(r"knn .* fit 1x +score 1x$", lines[BUILT_IN.index("knn")])
    costs = json.loads(COSTS_FILE.read_text())["measured"]
    assert costs["cpu"] in note and costs["command"] in note and "noveltykit detectors NAME" in note


def test_detectors_name_and_verbose_print_the_parameters():
    one = cli("detectors", "feat-gauss")
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith("feat-gauss: " + nd.detector_class("feat-gauss").summary)
    assert "needs [pretrained]" in one.stdout and re.search(r"cost: fit [\d.e-]+ s, score", one.stdout)
    for key, value in nd.make("feat-gauss").get_params().items():
        assert f"    {key} = {value!r}" in one.stdout
    verbose = cli("detectors", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    for name in BUILT_IN:
        assert f"    {nd.make(name).get_params()}" in verbose.stdout
    wrong = cli("detectors", "no-such-detector")
    assert wrong.returncode == 2 and "available: ae, " in wrong.stderr


def test_the_readme_decision_guide_names_registered_detectors_and_cites_its_figures():
    rows = guide_rows()
    assert len(rows) >= 5
    for images, start, figures, source in rows:
        assert specs_in(start), f"row {images!r}: no detector to start with"
        for spec in specs_in(start) + specs_in(figures):
            parsed = MethodSpec.parse(spec)
            assert parsed.detector in BUILT_IN, f"row {images!r}: {spec!r} is not a registered detector"
            nd.make(parsed.detector, **dict(parsed.params))  # its parameters are valid
        links = re.findall(r"\]\((docs/[\w/.-]+\.md)#([\w-]+)\)", source)
        assert links, f"row {images!r}: cite the doc section its figures come from"
        cited = "\n".join(doc_section(ROOT / path, anchor) for path, anchor in links)
        for figure in FIGURE.findall(figures):
            assert figure in cited, f"row {images!r}: {figure} is not in the sections it cites {links}"


def test_the_readme_first_screen_says_what_to_run_and_which_detector():
    text = README.read_text()
    first = text.split("\n## ", 1)[0].splitlines()
    assert len(first) < 30, f"the README's first screen is {len(first)} lines"
    assert first[:4] == ["# noveltykit", "", "```bash", first[3]] and first[3].startswith("make run ")
    assert first[4].startswith("make test ")
    fit = [line for line in first if line.startswith("noveltykit fit --method ")]
    assert fit and any(line.startswith("noveltykit score ") for line in first)
    spec = fit[0].split()[3]
    assert spec.split(":")[0] in BUILT_IN and spec != "knn"
    assert any(f"`{spec}`" == row[1] for row in guide_rows()), f"{spec} is not a row of the decision guide"
    assert "(#which-detector)" in "\n".join(first)


@pytest.mark.parametrize("heading, anchor", [("Does reading images at their own size matter? Measured",
                                              "does-reading-images-at-their-own-size-matter-measured"),
                                             ("EDE-GAN teacher on MNIST (`cpu` budget)",
                                              "ede-gan-teacher-on-mnist-cpu-budget")])
def test_github_slug(heading, anchor):
    assert github_slug(heading) == anchor
