"""Data: the built-in ShapesVQA task, user conversation datasets, and answer scoring.

Everything yields `VQASample`s, so models and evaluators never care where an item came from.
"""

from vlsi_edge.data.conversations import ConversationDataset, DatasetError, load_conversations
from vlsi_edge.data.questions import QUESTION_FAMILIES
from vlsi_edge.data.sample import VQASample
from vlsi_edge.data.scenes import COLORS, HELDOUT_PAIRS, SHAPES, SIZES, Scene, SceneObject, render_scene
from vlsi_edge.data.scoring import chance_levels, exact_match, normalize_answer, score
from vlsi_edge.data.shapes import SPLITS, ShapesConfig, ShapesVQA, answer_vocabulary, corpus

__all__ = [
    "COLORS",
    "HELDOUT_PAIRS",
    "QUESTION_FAMILIES",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "ConversationDataset",
    "DatasetError",
    "Scene",
    "SceneObject",
    "ShapesConfig",
    "ShapesVQA",
    "VQASample",
    "answer_vocabulary",
    "chance_levels",
    "corpus",
    "exact_match",
    "load_conversations",
    "normalize_answer",
    "render_scene",
    "score",
]
