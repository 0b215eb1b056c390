"""User datasets in the formats people already have, as lazily loaded `VQASample`s.

Two layouts are read, from a JSON list or from JSONL (one object per line):
- LLaVA conversations: {"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."},
  {"from": "gpt", "value": "..."}, ...]}. Each gpt turn becomes one sample whose `history` holds the
  turns before it, so a multi-turn conversation trains every answer with its real context.
- Plain records: {"image", "question", "answer"} (optional "id", "family").

All structure is checked and every image path is resolved (and, by default, opened and verified)
when the file is loaded, so a broken dataset fails at once with a message naming the file, the record
and the key — not hours into a training run. Pixels are read only when a sample is accessed.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vlsi_edge.data.images import MAX_PIXELS, ImageError, open_rgb
from vlsi_edge.data.sample import VQASample
from vlsi_edge.errors import InputError

logger = logging.getLogger(__name__)

_USER_ROLES = ("human", "user")
_ASSISTANT_ROLES = ("gpt", "assistant")
_IMAGE_TOKEN = re.compile(r"\s*<image>\s*")


class DatasetError(InputError, ValueError):
    """A user dataset is malformed; the message names the file, the record and the key or image."""


@dataclass(frozen=True)
class _Entry:
    image_path: Path
    question: str
    answer: str
    history: tuple[tuple[str, str], ...]
    uid: str
    family: str


class ConversationDataset:
    """Validated samples of a conversation file; images are opened on access (`len`, `[i]`)."""

    def __init__(self, entries: list[_Entry], source: Path):
        self._entries = entries
        self.source = source

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> VQASample:
        entry = self._entries[index]
        return VQASample(
            image=_open_rgb(entry.image_path, f"{self.source}: sample {entry.uid!r}"),
            question=entry.question,
            answer=entry.answer,
            family=entry.family,
            history=entry.history,
            uid=entry.uid,
        )

    def words(self, index: int) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """(question, answer, history) of sample `index`, without opening its image."""
        e = self._entries[index]
        return e.question, e.answer, e.history

    def __repr__(self) -> str:
        return f"ConversationDataset({str(self.source)!r}, {len(self)} samples)"


def _open_rgb(path: Path, where: str) -> Image.Image:
    try:
        return open_rgb(path)
    except ImageError as error:
        raise DatasetError(f"{where}: {error}") from None


def _read_records(path: Path) -> list:
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text (byte {e.start}); expected a JSON / JSONL dataset file") from None
    if path.suffix.lower() == ".jsonl":
        records = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DatasetError(f"{path}: line {line_no} is not valid JSON: {error.msg}") from error
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise DatasetError(
                f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
                "use a .jsonl suffix for one record per line"
            ) from error
        if not isinstance(records, list):
            raise DatasetError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    if not records:
        raise DatasetError(f"{path}: dataset is empty (no records)")
    return records


def _strip_image_token(text: str) -> str:
    return _IMAGE_TOKEN.sub(" ", text).strip()


def _conversation_turns(turns: object, where: str) -> list[tuple[str, str]]:
    """(user, assistant) pairs of a LLaVA conversation, checking it alternates human/gpt."""
    if not isinstance(turns, list) or not turns:
        raise DatasetError(f"{where}: key 'conversations' must be a non-empty list of turns")
    pairs: list[tuple[str, str]] = []
    for k, turn in enumerate(turns):
        expected = _USER_ROLES if k % 2 == 0 else _ASSISTANT_ROLES
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise DatasetError(f"{where}: conversations[{k}] needs a 'from' and a string 'value'")
        if turn.get("from") not in expected:
            raise DatasetError(
                f"{where}: conversations[{k}] has 'from': {turn.get('from')!r}, expected {expected[0]!r} "
                "(turns must alternate human, gpt, human, gpt, ...)"
            )
        if k % 2 == 1:
            pairs.append((_strip_image_token(turns[k - 1]["value"]), turn["value"].strip()))
    if len(turns) % 2:
        raise DatasetError(f"{where}: conversation ends with a human turn that has no gpt answer")
    return pairs


def _resolve_image(record: dict, root: Path, where: str, verify: bool, sandbox: bool) -> Path:
    if "image" not in record:
        raise DatasetError(f"{where}: missing key 'image'")
    if not isinstance(record["image"], str) or not record["image"]:
        raise DatasetError(f"{where}: key 'image' must be a non-empty path string, got {record['image']!r}")
    image_path = Path(record["image"]).expanduser()
    if not image_path.is_absolute():
        image_path = root / image_path
    if sandbox and not image_path.resolve().is_relative_to(root.resolve()):  # '..', absolute, a link leading out
        raise DatasetError(f"{where}: image {record['image']!r} lies outside the image root {str(root)!r} "
                           "(data.image_sandbox is on); move it inside or turn the sandbox off")
    if not image_path.is_file():
        raise DatasetError(f"{where}: image file not found: {str(image_path)!r} (key 'image')")
    if verify:
        try:
            with Image.open(image_path) as image:
                pixels = image.size[0] * image.size[1]
                image.verify()
        except Exception as error:  # PIL raises many types for a broken file
            raise DatasetError(f"{where}: image {str(image_path)!r} is unreadable or corrupt: {error}") from error
        if pixels > MAX_PIXELS:
            raise DatasetError(f"{where}: image {str(image_path)!r} has {pixels / 1e6:.0f} megapixels, over the "
                               f"{MAX_PIXELS / 1e6:.0f} the loader accepts; resize it")
    return image_path


def load_conversations(
    path: str | Path,
    image_root: str | Path | None = None,
    verify_images: bool = True,
    sandbox: bool = False,
) -> ConversationDataset:
    """Load a LLaVA-style conversation file or a plain question/answer record file.

    Image paths are relative to `image_root` (default: the folder of `path`); absolute paths and
    paths with '..' are followed as written (LLaVA files often point into a shared image store), and
    the loader logs how many images lie outside the root. `sandbox=True` refuses them instead, and
    any path that a symbolic link leads out of the root: for dataset files you did not write.
    `verify_images=False` skips opening every image at load time (only existence is checked) —
    faster for very large datasets, at the cost of finding a corrupt file only when it is read.
    Raises `DatasetError` naming the file, record and key for any problem.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    records = _read_records(path)
    entries: list[_Entry] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DatasetError(f"{path}: record {index} is a {type(record).__name__}, expected an object")
        record_id = str(record.get("id", index))
        where = f"{path}: record {index} (id {record_id!r})"
        if "conversations" in record:
            pairs = _conversation_turns(record["conversations"], where)
            image_path = _resolve_image(record, root, where, verify_images, sandbox)
            family = str(record.get("family", "conversation"))
            for turn, (question, answer) in enumerate(pairs):
                entries.append(
                    _Entry(image_path, question, answer, tuple(pairs[:turn]), f"{record_id}/{turn}", family)
                )
        elif "question" in record or "answer" in record:
            for key in ("question", "answer"):
                if not isinstance(record.get(key), str):
                    raise DatasetError(f"{where}: missing or non-string key {key!r}")
            image_path = _resolve_image(record, root, where, verify_images, sandbox)
            entries.append(
                _Entry(
                    image_path,
                    _strip_image_token(record["question"]),
                    record["answer"].strip(),
                    (),
                    record_id,
                    str(record.get("family", "conversation")),
                )
            )
        else:
            raise DatasetError(
                f"{where}: missing key 'conversations' (LLaVA format) or 'question'/'answer' (plain records)"
            )
    logger.info("loaded %d samples from %d records of %s", len(entries), len(records), path)
    outside = sorted({str(e.image_path) for e in entries if not e.image_path.resolve().is_relative_to(root.resolve())})
    if outside:
        logger.warning("%s: %d images lie outside the image root %s (absolute paths or '..'), e.g. %s; they are read "
                       "as written (data.image_sandbox=true refuses them)", path, len(outside), root, outside[0])
    return ConversationDataset(entries, path)
