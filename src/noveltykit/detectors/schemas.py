"""Saved models of older noveltykit versions, read as today's: the one place that knows the old
config.json layouts (users keep such folders). `load` reads only the current layout.

    schema 1   before config.json carried "schema" and the weights' sha256
    schema 2   params still held run settings (checkpoint_dir, device, ...), now in RunContext
    schema 3   before it recorded the preprocessing, training facts and versions
    schema 4   today's (`base.SCHEMA_VERSION`); `pixel_threshold_` (map detectors) may be absent,
               and `load` then leaves it None

A parameter added since a model was saved (e.g. the reconstruction detectors' `map_sigma`) needs
nothing here: `load` builds the detector with `make(name, **params)`, so it takes its default.
"""
from __future__ import annotations

from ..data.imagespec import ImageSpec

# Run settings that saves before schema 3 held among the params.
OLD_RUN_PARAMS = ("checkpoint_dir", "resume", "progress", "device", "teacher_cache")


def upgrade(config: dict) -> dict:
    """A checked config.json of any readable schema in today's layout (a new dict)."""
    config = dict(config)
    schema = config.get("schema", 1)
    if schema < 3:
        config["params"] = {k: v for k, v in config["params"].items() if k not in OLD_RUN_PARAMS}
    # before the threshold's origin was recorded: the only rule there was
    config.setdefault("threshold_from", {"quantile": config["params"].get("threshold_quantile", 0.95),
                                         "of": "normal validation scores"})
    if "preprocessing" not in config:  # before schema 4: the loaders' rules for this input shape
        shape = tuple(int(s) for s in config["input_shape_"])
        config["preprocessing"] = ImageSpec.of_shape(shape).to_dict()
    return config
