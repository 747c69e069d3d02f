"""Method specs as written on the command line: `knn`, `knn:k=10,aggregate=sum`."""
from __future__ import annotations

from dataclasses import dataclass


def parse_value(text: str):
    low = text.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class MethodSpec:
    detector: str
    params: tuple[tuple[str, object], ...] = ()
    alias: str | None = None  # the label, where the spec holds something long (a path)

    @classmethod
    def parse(cls, spec: str) -> "MethodSpec":
        name, _, rest = spec.partition(":")
        params = []
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise ValueError(f"method spec {spec!r}: expected name:key=value,key=value")
            params.append((key.strip(), parse_value(value.strip())))
        if not name:
            raise ValueError(f"method spec {spec!r} has no detector name")
        return cls(name.strip(), tuple(params))

    @property
    def label(self) -> str:
        """The column name in tables: the spec as the user would write it."""
        if self.alias:
            return self.alias
        if not self.params:
            return self.detector
        return self.detector + ":" + ",".join(f"{k}={v}" for k, v in self.params)
