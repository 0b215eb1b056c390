"""Family adapters: everything model-specific, behind one small interface (`Family`)."""

from vlsi_edge.config import ConfigError
from vlsi_edge.families.base import IGNORE_INDEX, Family, TinySpec, chat_messages
from vlsi_edge.families.idefics3 import Idefics3Family
from vlsi_edge.families.qwen2_vl import Qwen2VLFamily
from vlsi_edge.families.llava import LlavaFamily
from vlsi_edge.families.inputs import build_batch, build_example, collate
from vlsi_edge.families.tokenizer import train_bpe
from vlsi_edge.families.vocab import VocabularyMismatch, check_vocab_compatible

FAMILIES: dict[str, Family] = {
    "idefics3": Idefics3Family(),
    "qwen2_vl": Qwen2VLFamily(),
    "llava": LlavaFamily(),
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


__all__ = [
    "FAMILIES",
    "IGNORE_INDEX",
    "Family",
    "TinySpec",
    "VocabularyMismatch",
    "build_batch",
    "build_example",
    "chat_messages",
    "check_vocab_compatible",
    "collate",
    "get_family",
    "train_bpe",
]
