"""The toy zoo: a teacher and a student base of the default family, shipped in the repository.

    >>> from vlsi_edge.zoo import load_pair
    >>> pair = load_pair()            # offline: reads vlsi_edge/zoo/models/{teacher,student}
    >>> pair.teacher.card["accuracy"]["test"]["accuracy"]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from vlsi_edge.families import Family, get_family

ZOO_DIR = Path(__file__).parent / "models"


@dataclass
class ZooModel:
    name: str
    model: PreTrainedModel
    processor: Any
    family: Family
    card: dict
    path: Path


@dataclass
class ZooPair:
    teacher: ZooModel
    student: ZooModel


def zoo_path(name: str) -> Path:
    path = ZOO_DIR / name
    if not (path / "card.json").is_file():
        known = sorted(p.name for p in ZOO_DIR.glob("*") if (p / "card.json").is_file())
        raise FileNotFoundError(
            f"no zoo model {name!r} in {ZOO_DIR} (known: {', '.join(known) or 'none'}); "
            "rebuild with `python -m vlsi_edge.zoo build`"
        )
    return path


def load_model(name: str, dtype: torch.dtype = torch.float32) -> ZooModel:
    path = zoo_path(name)
    card = json.loads((path / "card.json").read_text())
    family = get_family(card["family"])
    model = family.load(path, dtype=dtype).eval()
    return ZooModel(name, model, family.load_processor(path), family, card, path)


def load_pair(dtype: torch.dtype = torch.float32) -> ZooPair:
    return ZooPair(teacher=load_model("teacher", dtype), student=load_model("student", dtype))


__all__ = ["ZOO_DIR", "ZooModel", "ZooPair", "load_model", "load_pair", "zoo_path"]
