"""Teacher/student vocabulary compatibility: distillation compares distributions id by id."""

from __future__ import annotations

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from vlsi_edge.errors import InputError


class VocabularyMismatch(InputError, ValueError):
    """Teacher and student tokenizers disagree on token ids."""


def check_vocab_compatible(
    teacher: PreTrainedTokenizerBase,
    student: PreTrainedTokenizerBase,
    teacher_model: PreTrainedModel | None = None,
    student_model: PreTrainedModel | None = None,
    texts: list[str] = (),
) -> int:
    """Check that every student token has the same id in the teacher, and that both encode `texts` (e.g. the
    training answers) to the same ids; return the shared width.

    Shared ids are not enough: a tokenizer with fewer BPE merges keeps every id it has, yet splits words
    differently, and the answer positions the KL compares would no longer line up.

    Logit widths may differ by padding rows (Qwen2-VL 2B: 151,936 vs 7B/72B: 152,064), so the KL is
    taken over the common prefix `[0, shared)` of ids, which must hold every real student token.
    """
    t_vocab, s_vocab = teacher.get_vocab(), student.get_vocab()
    missing = [tok for tok in s_vocab if tok not in t_vocab]
    moved = [(tok, s_vocab[tok], t_vocab[tok]) for tok in s_vocab if tok in t_vocab and t_vocab[tok] != s_vocab[tok]]
    if missing or moved:
        details = []
        if missing:
            details.append(f"{len(missing)} student tokens absent from the teacher (e.g. {missing[:5]})")
        if moved:
            examples = ", ".join(f"{tok!r}: student {s} vs teacher {t}" for tok, s, t in moved[:5])
            details.append(f"{len(moved)} tokens with different ids ({examples})")
        raise VocabularyMismatch(
            "teacher and student do not share a vocabulary: " + "; ".join(details)
            + ". VLsI compares next-token distributions id by id, so both must come from the same family "
            "and tokenizer."
        )
    for text in texts:
        t_ids = teacher(text, add_special_tokens=False)["input_ids"]
        s_ids = student(text, add_special_tokens=False)["input_ids"]
        if t_ids != s_ids:
            raise VocabularyMismatch(
                f"teacher and student tokenize {text!r} differently (teacher {t_ids}, student {s_ids}): same ids, "
                "different merges. VLsI compares answer positions one to one, so both need the same tokenizer."
            )
    shared = max(s_vocab.values()) + 1
    for role, model in (("teacher", teacher_model), ("student", student_model)):
        if model is not None:
            width = model.get_output_embeddings().weight.shape[0]
            if width < shared:
                raise VocabularyMismatch(
                    f"{role} lm_head has {width} rows but the tokenizer uses ids up to {shared - 1}"
                )
    return shared
