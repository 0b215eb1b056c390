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

from vlsi_edge.config import ConfigError
from vlsi_edge.families import Family, get_family
from vlsi_edge.families.sources import ZOO_DIR, zoo_path


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



def load_model(name: str, dtype: torch.dtype = torch.float32) -> ZooModel:
    path = zoo_path(name)
    try:
        card = json.loads((path / "card.json").read_text(encoding="utf-8"))
        family = get_family(card["family"])
    except (ValueError, KeyError, TypeError) as e:  # ConfigError (an unknown family) is a ValueError too
        raise ConfigError(f"{path / 'card.json'}: not a zoo card with a known 'family' ({type(e).__name__}: {e}); "
                          "rebuild with `python -m vlsi_edge.zoo build`") from None
    model = family.load(path, dtype=dtype).eval()
    return ZooModel(name, model, family.load_processor(path), family, card, path)


def load_pair(dtype: torch.dtype = torch.float32) -> ZooPair:
    return ZooPair(teacher=load_model("teacher", dtype), student=load_model("student", dtype))


__all__ = ["ZOO_DIR", "ZooModel", "ZooPair", "load_model", "load_pair", "zoo_path"]
