"""What `noveltykit detectors` prints: one line a detector (what it is, whether it trains a network,
needs labels or an optional extra, its measured cost relative to `knn`), or one detector in full
(with whether it exports to ONNX).

Everything comes from the detectors' own contract (`summary`, `trains_network`, `uses_labels`,
`extras`, `exportable`) and from `costs.json` beside this module, written by `benchmarks/detector_costs.py`.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .registry import available, detector_class, make

COSTS_FILE = Path(__file__).with_name("costs.json")
COST_BASELINE = "knn"
MEASURE_HINT = "python benchmarks/detector_costs.py --only NAME"


@lru_cache(maxsize=1)
def measured_costs() -> dict:
    """`costs.json`: {"measured": how and where, "detectors": {name: {"fit_s", "score_s", ...}}};
    an empty dict when the file is missing or unreadable."""
    try:
        doc = json.loads(COSTS_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _ratio(value: float, base: float) -> str:
    r = value / base
    if r >= 100:
        return f"{round(r, -len(str(int(r))) + 2):.0f}x"  # two significant digits
    return f"{r:.2g}x" if r < 10 else f"{r:.0f}x"


def relative_cost(name: str) -> tuple[str, str] | None:
    """("fit 40x", "score 3x"): `name`'s measured CPU seconds over `knn`'s, or None if not measured."""
    dets = measured_costs().get("detectors", {})
    own, base = dets.get(name), dets.get(COST_BASELINE)
    if not own or not base:
        return None
    return (f"fit {_ratio(own['fit_s'], base['fit_s'])}", f"score {_ratio(own['score_s'], base['score_s'])}")


def marks(name: str) -> list[str]:
    """What a newcomer must know before choosing it: training, labels, optional extras."""
    cls = detector_class(name)
    out = ["trains a network" if cls.trains_network else "no training"]
    if cls.uses_labels:
        out.append("needs labels")
    out += [f"needs [{extra}]" for extra in cls.extras]
    return out


def catalog_line(name: str, widths: tuple[int, int, int] = (15, 54, 32)) -> str:
    """`name  summary  marks  fit Nx score Nx`, in columns of `widths` (name, summary, marks)."""
    cost = relative_cost(name)
    cost_text = f"{cost[0]:<11} {cost[1]}" if cost else f"cost not measured ({MEASURE_HINT})"
    cells = (name, detector_class(name).summary, ", ".join(marks(name)))
    return "".join(f"{cell:<{width}}" for cell, width in zip(cells, widths)) + cost_text


def cost_note() -> list[str]:
    """Where the costs were measured, how, and with which command; where the parameters are."""
    measured = measured_costs().get("measured")
    where = ("costs: not measured: python benchmarks/detector_costs.py" if not measured else
             f"costs: CPU seconds relative to {COST_BASELINE}'s, default parameters, one thread, measured on "
             f"{measured['cpu']} ({measured.get('cpu_id', '?')}) by `{measured['command']}`: "
             f"{measured.get('input_short', measured['input'])} ({COSTS_FILE.name} has the seconds)")
    return [where, "parameters: noveltykit detectors NAME (one detector in full), or --verbose (all); "
                   "which to start with: the README's decision guide"]


def catalog(verbose: bool = False) -> list[str]:
    """One line per registered detector, by name; `verbose`: each followed by its default parameters."""
    names = available()
    widths = (max(map(len, names)) + 2, max(len(detector_class(n).summary) for n in names) + 2,
              max(len(", ".join(marks(n))) for n in names) + 2)
    lines = []
    for name in names:
        lines.append(catalog_line(name, widths))
        if verbose:
            lines.append(f"    {make(name).get_params()}")
    return lines


def describe(name: str) -> list[str]:
    """One detector in full: summary, marks, measured cost (seconds and relative), default parameters."""
    cls = detector_class(name)  # an unknown name: ValueError listing the available ones
    lines = [f"{name}: {cls.summary}", f"  {', '.join(marks(name))}",
             "  exports to ONNX: noveltykit export (a setting that cannot says so)" if cls.exportable
             else "  no ONNX export"]
    own = measured_costs().get("detectors", {}).get(name)
    cost = relative_cost(name)
    if own and cost:
        lines.append(f"  cost: fit {own['fit_s']:.3g} s, score {own['score_s']:.3g} s ({cost[0]}, {cost[1]} "
                     f"relative to {COST_BASELINE})")
    else:
        lines.append(f"  cost: not measured ({MEASURE_HINT})")
    measured = measured_costs().get("measured")
    if own and measured:
        cpu = f"{own.get('cpu', measured['cpu'])} ({own.get('cpu_id', measured.get('cpu_id', '?'))})"
        lines.append(f"    measured on {cpu}, one thread, by `{measured['command']}`: "
                     f"{measured.get('input_short', measured['input'])}")
    lines.append("  default parameters:")
    lines += [f"    {key} = {value!r}" for key, value in make(name).get_params().items()]
    return lines
