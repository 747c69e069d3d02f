"""An ensemble of detectors: each member's score standardised on its own normal validation scores,
then a weighted mean of them (docs/ensemble.md).

    members   the member detectors as one text a method spec can hold: members joined by `+`, a
              member's own parameters after its name, each after a `/`:
              `knn+pca`, `knn/k=10/aggregate=max+pca/n_components=0.5`
              (on the command line: `--method "ensemble:members=knn/k=10+pca,combine=rank"`).
              A `+` followed by something that is not a detector's name belongs to the value
              before it, so `feat-knn/stages=5+last+pca` is two members. Values cannot hold `/`.
    combine   "zscore": (score - mean) / std of the member's validation scores (std floored at
              STD_FLOOR * max(1, |mean|), with a warning, when they are constant);
              "rank": the member's empirical CDF over its validation scores (`rank_scores`).
    weights   fixed member weights, one per member (`2+1` on the command line), non-negative;
              default equal. Written a priori: nothing here learns a weight.

`fit(X, X_val)` fits every member on X with X_val as its validation set (each member sets its
own threshold there), and takes each member's standardisation from its scores on X_val; the
ensemble's own threshold then comes from the base class, from the ensemble's scores on X_val,
as for every detector. A member that is not given a `random_state` gets the ensemble's.

What the contract says per class is per instance here, since the members come with the
parameters: `run_needs` and `uses_labels` read on an instance are its members' (their union, and
whether any member uses labels); read on the class (`detector_class("ensemble").run_needs`,
`noveltykit detectors`) they keep the class defaults, as do `trains_network` and `extras` (read
per class only): an ensemble of trained or `pretrained` members trains or needs what they do.
The benchmark reads `run_needs` through an instance, so a `kdgan` member shares the run's teacher
folder and a `feat-*` member gets the dataset's feature store.

The default members, `pca+kde`: cheap, no extra, and both score in float64, so an image's score
does not depend on its batch. A float32 member (`knn`) moves by ~1e-5 with the batching, which
z-scoring divides by its validation spread (docs/ensemble.md).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Detector, ExportNotSupported, export_not_supported
from .context import RunContext
from .fit_cache import fit_cached
from .registry import detector_class, is_known, make, register
from .specs import parse_value

MEMBER_SEP, PARAM_SEP = "+", "/"
COMBINES = ("zscore", "rank")
# `thresholds.too_few_above` as `Detector.fit` words it for a member
MEMBER_THRESHOLD_WARNING = r"[\w.-]+: only \d+ of \d+ normal validation images score above the threshold"
STD_FLOOR = 1e-9  # relative: a member's std is at least STD_FLOOR * max(1, |mean|)


# --- the members spec -------------------------------------------------------------------------------
def _render(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _split_members(text: str) -> list[str]:
    """`knn/k=3+pca` -> ['knn/k=3', 'pca']; a `+` that does not start a detector's name belongs to
    the value before it (`feat-knn/stages=5+last`)."""
    pieces: list[str] = []
    for piece in text.split(MEMBER_SEP):
        name = piece.split(PARAM_SEP, 1)[0].strip()
        if pieces and PARAM_SEP in pieces[-1] and not is_known(name):
            pieces[-1] += MEMBER_SEP + piece
        else:
            pieces.append(piece)
    return pieces


def _parse_member(text: str, whole: str) -> tuple[str, dict]:
    name, *items = text.split(PARAM_SEP)
    name = name.strip()
    if not name:
        raise ValueError(f"members {whole!r}: an empty member; write members as name+name or "
                         "name/key=value/key=value+name")
    params: dict = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"members {whole!r}: {item!r} in member {name!r} is not key=value "
                             "(a member's parameters: name/key=value/key=value)")
        if key in params:
            raise ValueError(f"members {whole!r}: member {name!r} gives {key!r} twice")
        params[key] = parse_value(value.strip())
    return name, params


def parse_members(members: Any) -> list[tuple[str, dict]]:
    """The members as (name, params) pairs, from the text (see the module docstring) or from a
    sequence of member texts or (name, params) pairs."""
    if isinstance(members, str):
        return [_parse_member(piece, members) for piece in _split_members(members)]
    if isinstance(members, (list, tuple)):
        out = []
        for item in members:
            if isinstance(item, str):
                out += parse_members(item)
            elif (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
                  and isinstance(item[1], dict)):
                out.append((item[0].strip(), dict(item[1])))
            else:
                raise ValueError(f"members: each member is a text 'name/key=value' or a (name, params) "
                                 f"pair, got {item!r}")
        return out
    raise ValueError(f"members: expected member detectors joined by '+', e.g. 'knn+pca', got {members!r}")


def render_members(specs: list[tuple[str, dict]]) -> str:
    """The canonical text of (name, params) pairs: `knn/k=3+pca`."""
    out = []
    for name, params in specs:
        for key, value in params.items():
            if PARAM_SEP in _render(value) or "=" in str(key) or PARAM_SEP in str(key):
                raise ValueError(f"members: {name}'s {key}={value!r} cannot be written in a members spec "
                                 f"(a value may not hold {PARAM_SEP!r})")
        out.append(name + "".join(f"{PARAM_SEP}{k}={_render(v)}" for k, v in params.items()))
    return MEMBER_SEP.join(out)


def _glue_hint(specs: list[tuple[str, dict]]) -> str:
    """Where a `+` was read as part of a value: said, since it may be a misspelt member name."""
    glued = [f"{name}'s {k}={v}" for name, params in specs for k, v in params.items()
             if isinstance(v, str) and MEMBER_SEP in v]
    if not glued:
        return ""
    return (f" (read {', '.join(glued)} as one value: a '{MEMBER_SEP}' not followed by a detector's name "
            "belongs to the value before it; a misspelt member name?)")


def _check_member_name(name: str) -> None:
    cls = detector_class(name)  # an unknown name: the registry's ValueError, listing the names
    if issubclass(cls, EnsembleDetector):
        raise ValueError(f"members: {name!r} is an ensemble; an ensemble cannot be a member of an ensemble "
                         "(list its members instead)")


def parse_weights(weights: Any) -> list[float] | None:
    """None, a sequence of numbers, or their text `2+1` -> a list of floats (None: equal)."""
    if weights is None:
        return None
    if isinstance(weights, str):
        items: Any = [w for w in weights.split(MEMBER_SEP)]
    elif isinstance(weights, (list, tuple, np.ndarray)):
        items = list(weights)
    else:
        raise ValueError(f"weights: one number per member, e.g. [2, 1] or '2+1', got {weights!r}")
    out = []
    for w in items:
        try:
            value = float(w)
        except (TypeError, ValueError):
            raise ValueError(f"weights: {w!r} is not a number (weights {weights!r})") from None
        if not math.isfinite(value):
            raise ValueError(f"weights: {w!r} is not a finite number")
        if value < 0:
            raise ValueError(f"weights: negative weight {w!r}; weights are non-negative")
        out.append(value)
    if out and sum(out) <= 0:
        raise ValueError("weights: at least one weight must be positive")
    return out


# --- the standardisations --------------------------------------------------------------------------
def zscore_stats(val_scores: np.ndarray) -> tuple[float, float, bool]:
    """(mean, std, constant) of a member's validation scores: std is the population std (ddof 0),
    floored at STD_FLOOR * max(1, |mean|); `constant` says the floor was used."""
    v = np.asarray(val_scores, np.float64)
    mean, std = float(v.mean()), float(v.std())
    floor = STD_FLOOR * max(1.0, abs(mean))
    return mean, max(std, floor), std < floor


def rank_scores(scores: np.ndarray, val_scores: np.ndarray) -> np.ndarray:
    """Each score's place among the validation scores, in [0, 1]: linear between the distinct
    validation values, which sit at their mean sorted position over n - 1 (mid-rank, so tied
    values share one place); the lowest at 0 and the highest at 1 when untied. A score below
    every validation score is 0, above every one 1 (unseen extremes saturate); one equal to a
    tied extreme gets its mid-rank (all equal: 0.5)."""
    v = np.sort(np.asarray(val_scores, np.float64))
    s = np.asarray(scores, np.float64)
    distinct, first, counts = np.unique(v, return_index=True, return_counts=True)
    heights = (first + (first + counts - 1)) / 2 / max(1, len(v) - 1) if len(distinct) > 1 else np.array([0.5])
    out = np.interp(s, distinct, heights)
    out[s < distinct[0]] = 0.0
    out[s > distinct[-1]] = 1.0
    return out


class _FromMembers:
    """A contract attribute that an instance computes from its members and the class keeps at
    its default (see the module docstring)."""

    def __init__(self, default, of_members):
        self.default, self.of_members = default, of_members

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None or "members" not in vars(obj):
            return self.default
        return self.of_members([detector_class(name) for name, _ in parse_members(obj.members)])


class EnsembleScore(nn.Module):
    """The zscore ensemble as one graph: images -> each member's graph -> (score - mean) / std,
    float64 -> the weighted sum."""

    def __init__(self, members: list[nn.Module], standardisation: list[dict], weights: np.ndarray):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.stats = [(float(s["mean"]), float(s["std"])) for s in standardisation]
        self.weights = [float(w) for w in weights]
        sizes = [m.images_per_call for m in members if getattr(m, "images_per_call", None)]
        self.images_per_call = min(sizes) if sizes else None  # for a member that says (ONNX export)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for member, (mean, std), w in zip(self.members, self.stats, self.weights):
            part = w * ((member(x).double() - mean) / std)
            total = part if total is None else total + part
        return total


@register
class EnsembleDetector(Detector):
    """A weighted mean of member detectors' scores, each standardised on its own normal validation
    scores (`combine`: zscore or rank). Ignores `y` unless a member uses labels: then `y` goes to
    those members."""

    name = "ensemble"
    summary = "a weighted mean of standardised member detectors"
    reads_uint8 = True  # images go on to the members as they came; each reads them its own way
    run_needs = _FromMembers(frozenset(), lambda classes: frozenset().union(*(c.run_needs for c in classes)))
    uses_labels = _FromMembers(False, lambda classes: any(c.uses_labels for c in classes))
    # ONNX export: with combine="zscore" and members that export (`scoring_module` says which not)
    exportable = _FromMembers(True, lambda classes: all(c.exportable for c in classes))

    def __init__(self, members: str = "pca+kde", combine: str = "zscore", weights: list[float] | str | None = None,
                 **base):
        super().__init__(**base)
        specs = parse_members(members)
        if len(specs) < 2:
            raise ValueError(f"members: an ensemble needs at least 2 members, got {len(specs)} ({members!r}); "
                             f"join them with '+', e.g. 'knn+pca'{_glue_hint(specs)}")
        canonical = render_members(specs)
        if render_members(parse_members(canonical)) != canonical:
            raise ValueError(f"members {members!r}: a member's value cannot be written in a members spec "
                             f"(read back as {render_members(parse_members(canonical))!r})")
        for name, params in specs:
            _check_member_name(name)
            try:
                make(name, **{"random_state": self.random_state, **params})  # its own checks, now
            except ValueError as exc:
                if not (hint := _glue_hint(specs)):
                    raise
                raise ValueError(f"{exc}{hint}") from None
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
        parsed = parse_weights(weights)
        if parsed is not None and len(parsed) != len(specs):
            raise ValueError(f"weights: {len(parsed)} weight(s) for {len(specs)} members")
        self.members = members if members == canonical else canonical
        self.combine = combine
        self.weights = weights if isinstance(weights, list) and weights == parsed else parsed

    # --- the members ---------------------------------------------------------------------------
    def member_specs(self) -> list[tuple[str, dict]]:
        """(name, params) of each member as `make` builds it (with the ensemble's random_state
        where the member gives none)."""
        return [(name, {"random_state": self.random_state, **params}) for name, params in parse_members(self.members)]

    def member_weights(self) -> np.ndarray:
        """The weights as used: summing to 1."""
        w = np.ones(len(parse_members(self.members))) if self.weights is None else np.asarray(self.weights, np.float64)
        return w / w.sum()

    def _member_context(self, i: int, member: Detector) -> RunContext:
        """The ensemble's context, with a checkpoint folder of the member's own."""
        ctx = self.context
        if ctx.checkpoint_dir is None:
            return ctx
        return replace(ctx, checkpoint_dir=Path(ctx.checkpoint_dir) / f"member{i}-{member.name}")

    def configure(self, context: RunContext) -> "EnsembleDetector":
        """The context goes on to every member (each trained member checkpoints in a folder of its
        own below `checkpoint_dir`); members made by a later fit get it then."""
        super().configure(context)
        for i, member in enumerate(getattr(self, "members_", ())):
            member.configure(self._member_context(i, member))
        return self

    def preferred_image_size(self) -> int | None:
        """The largest size a member prefers (so none reads thumbnails scaled up); None if none does."""
        members = getattr(self, "members_", None) or [make(n, **p) for n, p in self.member_specs()]
        sizes = [s for m in members if (s := m.preferred_image_size())]
        return max(sizes) if sizes else None

    # --- fit and score ---------------------------------------------------------------------------
    def _fit(self, x, x_val, y):
        members = [make(name, **params) for name, params in self.member_specs()]
        self._loaded_members = set()  # fits the cache gave: their resuming was another run's
        for i, member in enumerate(members):
            member.configure(self._member_context(i, member))
            with warnings.catch_warnings():
                # a member's own threshold plays no part in the ensemble's: the base class warns
                # about the ensemble's threshold, once, not about each member's
                warnings.filterwarnings("ignore", message=MEMBER_THRESHOLD_WARNING)
                # the run's fit cache may hold this very fit (e.g. a sweep's trial of the member)
                members[i], loaded = fit_cached(member, x, x_val, y=y if member.uses_labels else None)
            if loaded:
                self._loaded_members.add(i)
        self.members_ = members
        self.standardisation_ = [self._standardisation(i, m) for i, m in enumerate(members)]

    def _standardisation(self, i: int, member: Detector) -> dict:
        mean, std, constant = zscore_stats(member.validation_scores_)
        if constant:
            if self.combine == "zscore":
                how = f"its std is floored at {std:.3g}, so any other score is very far from normal"
            else:
                how = "its rank is 0 below that score, 0.5 at it and 1 above"
            warnings.warn(f"ensemble: member {i} ({member.name}) gives every validation image the same "
                          f"score ({mean:.6g}); {how}", stacklevel=4)
        return {"mean": mean, "std": std, "constant": constant}

    def _standardised(self, i: int, scores: np.ndarray) -> np.ndarray:
        if self.combine == "rank":
            return rank_scores(scores, self.members_[i].validation_scores_)
        stats = self.standardisation_[i]
        return (scores - stats["mean"]) / stats["std"]

    def member_scores(self, X) -> np.ndarray:
        """(n_members, N): each member's standardised scores of the images."""
        return np.stack([self._standardised(i, m.decision_function(X)) for i, m in enumerate(self.members_)])

    def _score(self, x) -> np.ndarray:
        return self.member_weights() @ self.member_scores(x)

    def scoring_module(self) -> nn.Module:
        """The members' graphs side by side, each z-scored, weighted (combine="zscore" only)."""
        self._check_fitted()
        if self.combine != "zscore":
            raise export_not_supported(self.name, f"combine={self.combine!r} interpolates in each member's "
                                                  "validation scores, which is not written as a graph; "
                                                  "combine='zscore' exports")
        modules = []
        for i, member in enumerate(self.members_):
            try:
                modules.append(member.scoring_module())
            except ExportNotSupported as exc:
                raise export_not_supported(self.name, f"member {i}: {exc}") from None
        return EnsembleScore(modules, self.standardisation_, self.member_weights())

    def fit_report(self) -> dict:
        """Each member's standardisation and fit report, less a per-step `trace` (a GAN's:
        thousands of numbers a cell, which a benchmark keeps out of results.json; the member's
        epoch history stays). After a fit in this process, also whether the fit cache gave each
        member: the ensemble's fit time then holds only a load of it (e.g. a fit retried after a
        busy member was deferred loads the members the first try made)."""
        loaded = getattr(self, "_loaded_members", None)  # None: this ensemble was loaded whole
        return {"member_fits": [{"member": i, "detector": m.name, **self.standardisation_[i],
                                 **({} if loaded is None else {"fit_loaded_from_cache": i in loaded}),
                                 **{k: v for k, v in m.fit_report().items() if k != "trace"}}
                                for i, m in enumerate(self.members_)]}

    def fit_resumed(self) -> bool:
        loaded = getattr(self, "_loaded_members", set())
        return any(m.fit_resumed() for i, m in enumerate(self.members_) if i not in loaded)

    def companions(self) -> dict[str, Detector]:
        """Each fitted member (`member0-knn`), and what its fit produced beside it."""
        out: dict[str, Detector] = {}
        for i, member in enumerate(self.members_):
            out[f"member{i}-{member.name}"] = member
            out.update({f"member{i}-{member.name}-{role}": other for role, other in member.companions().items()})
        return out

    # --- save and load ----------------------------------------------------------------------------
    def _state(self):
        return {f"m{i}.{key}": value for i, m in enumerate(self.members_) for key, value in m._state().items()}

    def _info(self) -> dict:
        return {"combine": self.combine, "weights": self.member_weights().tolist(),
                "members": [{"detector": m.name, "params": m.get_params(), "threshold_": m.threshold_,
                             "threshold_from": m.threshold_from_, "input_shape_": list(m.input_shape_),
                             "validation_scores": m.validation_scores_.tolist(), "training": m.training_,
                             "fitted": m._info(), "standardisation": self.standardisation_[i]}
                            for i, m in enumerate(self.members_)]}

    def _load_state(self, tensors, info):
        saved = info["members"]
        names = [name for name, _ in parse_members(self.members)]
        if [entry["detector"] for entry in saved] != names:
            raise ValueError(f"the saved members {[e['detector'] for e in saved]} are not this ensemble's {names}")
        members = []
        for i, entry in enumerate(saved):
            member = make(entry["detector"], **entry["params"])
            member.threshold_ = float(entry["threshold_"])
            member.threshold_from_ = dict(entry["threshold_from"])
            member.input_shape_ = tuple(int(s) for s in entry["input_shape_"])
            member.validation_scores_ = np.asarray(entry["validation_scores"], np.float64)
            member.training_ = dict(entry.get("training", {}))
            prefix = f"m{i}."
            own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                member._load_state(own, entry.get("fitted", {}))
            except KeyError as exc:  # the registry names the missing tensor: with its prefix
                raise KeyError(f"{prefix}{exc.args[0]}") from None
            member.configure(self._member_context(i, member))
            members.append(member)
        self.members_ = members
        self.standardisation_ = [dict(entry["standardisation"]) for entry in saved]
