"""Early stopping for an SFT stage: score val every `train.early_stopping` steps, keep the best student."""

from __future__ import annotations

import logging

from vlsi_edge.distill.session import Session, validation_accuracy, validation_items

log = logging.getLogger(__name__)


class EarlyStopping:
    """SFT with early stopping: score val every `train.early_stopping` steps (and at step 0), keep the best.

    The best weights travel in the checkpoint (`Session.best_student`), so a resumed run keeps them.
    """

    def __init__(self, s: Session, state: dict):
        self.s, self.state = s, state  # Progress.early_stopping: checkpointed with the run
        self.state.setdefault("curve", [])
        self.state.setdefault("best", [-1.0, 0])
        self.items = validation_items(s)

    def score(self, step: int) -> None:
        accuracy = validation_accuracy(self.s, self.items)
        self.state["curve"].append([step, accuracy])
        if accuracy > self.state["best"][0]:  # ties keep the earlier (fewer-step) student
            self.state["best"] = [accuracy, step]
            self.s.best_student = {k: v.detach().clone() for k, v in self.s.models.student.state_dict().items()}

    def finish(self) -> dict:
        accuracy, step = self.state["best"]
        self.s.models.student.load_state_dict(self.s.best_student)
        self.s.best_student = None
        log.info("early stopping: kept step %d (val %.3f)", step, accuracy)
        return {"every": self.s.config.train.early_stopping, "kept_step": step, "val": accuracy,
                "curve": self.state["curve"]}
