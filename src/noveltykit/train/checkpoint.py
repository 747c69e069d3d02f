"""Checkpoints without pickle: every tensor goes to safetensors, everything else to JSON.

Nested state (module and optimizer state dicts) is flattened to dotted keys; `unflatten` restores
the nesting, turning digit keys back into ints where the optimizer expects them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from ..fileio import atomic_write, atomic_write_json

SEP = "/"


def flatten(tree: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested dict/list tree into (tensors by path, the same tree with tensors replaced
    by {"__tensor__": path})."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node, path):
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous()
            return {"__tensor__": path}
        if isinstance(node, dict):
            return {"__dict__": [[k, walk(v, f"{path}{SEP}{k}")] for k, v in node.items()]}
        if isinstance(node, (list, tuple)):
            return [walk(v, f"{path}{SEP}{i}") for i, v in enumerate(node)]
        return node

    return tensors, walk(tree, prefix)


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        return {k: unflatten(v, tensors) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [unflatten(v, tensors) for v in skeleton]
    return skeleton


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write `state.safetensors` and `state.json` atomically (the JSON last: it marks completion)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors, skeleton = flatten(state)
    with atomic_write(directory / "state.safetensors") as f:
        f.write(save(tensors))
    atomic_write_json(directory / "state.json", skeleton)
    return directory


def load_checkpoint(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    skeleton = json.loads((directory / "state.json").read_text())
    return unflatten(skeleton, load_file(str(directory / "state.safetensors")))


class CheckpointDir:
    """Epoch checkpoints under one folder: `epoch-0003/` each, and `latest.json` naming the last
    complete one. The pointer is written after the checkpoint, so a crash mid-save leaves the
    previous checkpoint in charge; older epochs are pruned once the new one is in place."""

    def __init__(self, root: str | Path, keep: int = 1):
        self.root, self.keep = Path(root), keep

    def save(self, epoch: int, state: dict[str, Any], extra_keep: tuple[int, ...] = ()) -> Path:
        path = save_checkpoint(self.root / f"epoch-{epoch:04d}", state)
        atomic_write_json(self.root / "latest.json", {"epoch": epoch, "dir": path.name})
        keep = {epoch - i for i in range(self.keep)} | set(extra_keep)
        for old in self.root.glob("epoch-*"):
            if int(old.name.split("-")[1]) not in keep:
                for f in old.iterdir():
                    f.unlink()
                old.rmdir()
        return path

    def latest(self) -> dict[str, Any] | None:
        pointer = self.root / "latest.json"
        if not pointer.is_file():
            return None
        return load_checkpoint(self.root / json.loads(pointer.read_text())["dir"])
