"""Answer scoring and the conversation-format loader (the data real users bring)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vlsi_edge.data import (
    DatasetError,
    VQASample,
    chance_levels,
    exact_match,
    load_conversations,
    normalize_answer,
    score,
)


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,normal",
    [
        ("Two.", "2"),
        ("The red.", "red"),
        ("  YES. ", "yes"),
        ("an  orange\tsquare", "orange square"),
        ("ten", "10"),
        ("Small red circle, a large blue square.", "small red circle, large blue square"),
        ("small red circle ,large blue square,", "small red circle, large blue square"),
    ],
)
def test_normalize_answer(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_match_and_score():
    assert exact_match("Two.", "2")
    assert exact_match("The red.", "red")
    assert not exact_match("large blue square, small red circle", "small red circle, large blue square")
    assert not exact_match("3", "2")
    image = Image.new("RGB", (4, 4))
    samples = [
        VQASample(image, "q", "2", family="count"),
        VQASample(image, "q", "red", family="color"),
        VQASample(image, "q", "blue", family="color"),
        VQASample(image, "q", "yes", family="exist"),
    ]
    result = score(["two", "Red.", "red", "no"], samples)
    assert result["accuracy"] == pytest.approx(0.5)
    assert (result["correct"], result["total"]) == (2, 4)
    assert result["per_family"]["color"] == {"accuracy": 0.5, "correct": 1, "total": 2}
    assert result["per_family"]["count"]["accuracy"] == 1.0
    assert result["per_family"]["exist"]["accuracy"] == 0.0
    with pytest.raises(ValueError, match="3 predictions for 4 samples"):
        score(["a", "b", "c"], samples)


def test_chance_levels_is_the_majority_answer_share():
    image = Image.new("RGB", (4, 4))
    samples = [VQASample(image, "q", a, family=f) for f, a in [
        ("exist", "yes"), ("exist", "no"), ("exist", "Yes."), ("exist", "yes"),
        ("color", "red"), ("color", "blue"), ("color", "green"),
        ("count", "two"), ("count", "2"),
    ]]  # fmt: skip
    assert chance_levels(samples) == {"color": pytest.approx(1 / 3), "count": 1.0, "exist": 0.75}


# --------------------------------------------------------------------------------------------------
# Conversation datasets
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def images(tmp_path: Path) -> Path:
    (tmp_path / "imgs").mkdir()
    Image.new("L", (20, 10), 128).save(tmp_path / "imgs" / "a.png")
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "imgs" / "b.jpg")
    return tmp_path


def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_llava_multi_turn_with_history(images: Path):
    path = _write_json(images / "train.json", [
        {"id": "x1", "image": "imgs/a.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is this?"},
            {"from": "gpt", "value": "A grey box."},
            {"from": "human", "value": "How wide is it? "},
            {"from": "gpt", "value": "20 pixels."},
        ]},
        {"id": "x2", "image": str(images / "imgs" / "b.jpg"), "conversations": [
            {"from": "human", "value": "Colour?\n<image>"}, {"from": "gpt", "value": "red"},
        ]},
    ])  # fmt: skip
    ds = load_conversations(path)
    assert len(ds) == 3
    first, second, third = ds[0], ds[1], ds[2]
    assert (first.question, first.answer, first.history, first.uid) == ("What is this?", "A grey box.", (), "x1/0")
    assert second.question == "How wide is it?" and second.answer == "20 pixels."
    assert second.history == (("What is this?", "A grey box."),)
    assert second.uid == "x1/1" and second.family == "conversation"
    assert first.image.mode == "RGB" and first.image.size == (20, 10)
    assert third.question == "Colour?" and third.image.getpixel((0, 0))[0] > 200


def test_jsonl_records_with_image_root(images: Path, tmp_path: Path):
    elsewhere = tmp_path / "meta"
    elsewhere.mkdir()
    lines = [
        {"image": "imgs/a.png", "question": "<image> Is it grey?", "answer": "yes"},
        {"id": "r2", "image": "imgs/b.jpg", "question": "Colour?", "answer": " red ", "family": "color"},
    ]
    path = elsewhere / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    ds = load_conversations(path, image_root=images)
    assert [(s.question, s.answer, s.uid, s.family) for s in (ds[0], ds[1])] == [
        ("Is it grey?", "yes", "0", "conversation"),
        ("Colour?", "red", "r2", "color"),
    ]


def _llava(image: str = "imgs/a.png", **overrides) -> dict:
    record = {"id": "rec7", "image": image, "conversations": [
        {"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A"},
    ]}  # fmt: skip
    record.update(overrides)
    return record


@pytest.mark.parametrize(
    "content,pattern",
    [
        ("not json at all", r"bad\.json: not valid JSON"),
        ("[]", r"bad\.json: dataset is empty"),
        ({"image": "imgs/a.png"}, r"expected a JSON list"),
        ([{"id": "rec7", "conversations": []}], r"bad\.json: record 0 \(id 'rec7'\).*conversations"),
        ([{"id": "rec7", "image": "imgs/a.png"}], r"record 0 \(id 'rec7'\): missing key 'conversations'"),
        ([_llava(image=None)], r"record 0 \(id 'rec7'\): key 'image'"),
        ([{k: v for k, v in _llava().items() if k != "image"}], r"record 0 \(id 'rec7'\): missing key 'image'"),
        (
            [_llava(conversations=[{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}])],
            r"rec7.*conversations\[0\].*'gpt'.*alternate",
        ),
        (
            [_llava(conversations=[{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}, {"from": "human", "value": "Q2"}])],
            r"rec7.*ends with a human turn",
        ),
        ([_llava(), _llava(image="imgs/missing.png", id="rec8")], r"record 1 \(id 'rec8'\).*not found.*missing\.png"),
        ([{"image": "imgs/a.png", "question": "Q?"}], r"record 0 \(id '0'\).*'answer'"),
    ],
)
def test_loader_errors_name_file_record_and_key(images: Path, content, pattern):
    path = images / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DatasetError, match=pattern):
        load_conversations(path)


def test_loader_missing_file_and_corrupt_image(images: Path):
    with pytest.raises(DatasetError, match=r"nope\.json: dataset file not found"):
        load_conversations(images / "nope.json")
    (images / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    path = _write_json(images / "c.json", [_llava(image="imgs/broken.png")])
    with pytest.raises(DatasetError, match=r"c\.json: record 0 \(id 'rec7'\).*broken\.png.*corrupt"):
        load_conversations(path)
    # Without the load-time check the same file fails, just as clearly, on access.
    lazy = load_conversations(path, verify_images=False)
    with pytest.raises(DatasetError, match=r"rec7/0.*broken\.png: not an image PIL can read"):
        lazy[0]
    path = images / "lines.jsonl"
    path.write_text('{"image": "imgs/a.png", "question": "q", "answer": "a"}\n{oops\n')
    with pytest.raises(DatasetError, match=r"lines\.jsonl: line 2 is not valid JSON"):
        load_conversations(path)
