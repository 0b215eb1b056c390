"""The one record type every dataset in the project yields.

ShapesVQA, user conversation datasets and the collators all meet at `VQASample`, so a model, a
scorer or an exporter never needs to know where a question came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class VQASample:
    """One (image, question, answer) item, optionally with earlier conversation turns.

    `question` never contains an "<image>" placeholder: where the image goes in the prompt is the
    model family's business, not the dataset's.
    """

    image: Image.Image  # RGB
    question: str
    answer: str
    family: str = "conversation"  # question family: "color", "count", "exist", "spatial", "caption", ...
    history: tuple[tuple[str, str], ...] = ()  # earlier (user, assistant) turns, oldest first
    uid: str = ""  # stable id, e.g. "test/00042"
