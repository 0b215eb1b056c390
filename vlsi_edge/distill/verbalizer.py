"""Verbalizers: let an intermediate decoder layer say, as a next-token distribution, what it thinks.

    verbalize(h_k) = lm_head(final_norm(verb_ffn_k(h_k)))            (VLsI, arXiv 2412.01822, Sec. 3.1)

One `VerbFFN` per target layer, per model. `final_norm` and `lm_head` are the backbone's own and stay
frozen; this module never owns them, it receives them at call time. `h_k` is the output of decoder
layer k, i.e. `hidden_states[k + 1]` of a Hugging Face forward with `output_hidden_states=True` (index 0
is the embedding output, and the *last* entry has already been through the final norm — one reason the
model's last layer is not a target: the final-layer term uses the model's real logits instead).

Shapes: D hidden size, V vocabulary size, `...` any leading dims (batch, positions).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor, nn

from vlsi_edge.atomic import write_bytes, write_json

log = logging.getLogger(__name__)

WEIGHTS_FILE = "verbalizers.safetensors"
CONFIG_FILE = "verbalizers.json"
_RESERVED_KEYS = ("hidden_size", "layers", "residual")


class VerbFFN(nn.Module):
    """Gated FFN without expansion: `down(silu(gate(h)) * up(h))`, three bias-free `D x D` linears.

    3 * D^2 parameters: 7 targets of a D=3584 student give 7 * 3 * 3584^2 = 269.7M, the paper's count.

    `residual=True` (our default, a config decision): output `h + ffn(h)` with `down` zero-initialised,
    so an untrained verbalizer is exactly the identity and `verbalize` starts as the logit lens — step 1
    then begins from a sensible distribution instead of noise. Note that at init only `down` receives a
    gradient (gate/up are multiplied by a zero matrix); they start moving after the first update.
    `residual=False` is the paper's plain form: output `ffn(h)`, default `nn.Linear` init.
    """

    def __init__(self, hidden_size: int, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        self.gate = nn.Linear(hidden_size, hidden_size, bias=False)
        self.up = nn.Linear(hidden_size, hidden_size, bias=False)
        self.down = nn.Linear(hidden_size, hidden_size, bias=False)
        if residual:
            nn.init.zeros_(self.down.weight)

    def forward(self, h: Tensor) -> Tensor:
        """h [..., D] -> [..., D]."""
        out = self.down(F.silu(self.gate(h)) * self.up(h))
        return h + out if self.residual else out


class Verbalizers(nn.Module):
    """One `VerbFFN` per target decoder layer of one model (teacher or student)."""

    def __init__(self, hidden_size: int, layers: Sequence[int], residual: bool = True) -> None:
        super().__init__()
        if len(set(layers)) != len(layers):
            raise ValueError(f"verbalizer layers must be distinct, got {list(layers)}")
        self.hidden_size = hidden_size
        self.residual = residual
        self.layers: list[int] = sorted(int(k) for k in layers)
        # ModuleDict keys must be strings; state-dict keys read `ffns.<layer>.gate.weight`.
        self.ffns = nn.ModuleDict({str(k): VerbFFN(hidden_size, residual) for k in self.layers})

    def forward(self, layer: int, h: Tensor) -> Tensor:
        """h [..., D] (output of decoder layer `layer`) -> transformed hidden state [..., D]."""
        key = str(layer)
        if key not in self.ffns:
            raise KeyError(f"no verbalizer for decoder layer {layer}; verbalized layers: {self.layers}")
        return self.ffns[key](h)

    def __len__(self) -> int:
        return len(self.layers)

    def extra_repr(self) -> str:
        return f"hidden_size={self.hidden_size}, layers={self.layers}, residual={self.residual}"


def verbalize(
    verbalizers: Verbalizers, layer: int, h: Tensor, final_norm: nn.Module, lm_head: nn.Module
) -> Tensor:
    """Next-token logits of decoder layer `layer`: `lm_head(final_norm(verb_ffn_layer(h)))`.

    h [..., D] -> logits [..., V]. `final_norm` / `lm_head` are the backbone's own (frozen by the caller;
    gradients still flow *through* them to `h` and to the verb-FFN).
    """
    return lm_head(final_norm(verbalizers(layer, h)))


# ---- targets ---------------------------------------------------------------------------------------
def target_layers(num_layers: int, stride: int, offset: int) -> list[int]:
    """Every `stride`-th decoder layer from `offset`: paper (stride 4, offset 2) gives 28 -> 7, 80 -> 20."""
    if num_layers < 1 or stride < 1:
        raise ValueError(f"target_layers needs num_layers >= 1 and stride >= 1, got {num_layers}, {stride}")
    if not 0 <= offset < num_layers:
        raise ValueError(f"target layer offset {offset} outside the decoder layers [0, {num_layers})")
    return list(range(offset, num_layers, stride))


def check_target_layers(layers: Sequence[int], num_layers: int, role: str) -> list[int]:
    """Raise ValueError (naming `role`, the bad index and the valid range) unless `layers` is a non-empty,
    strictly increasing list of decoder-layer indices in [0, num_layers). Returns it as a list."""
    layers = list(layers)
    valid = f"valid decoder layers are [0, {num_layers}) ({num_layers} layers)"
    if not layers:
        raise ValueError(f"{role} target layers are empty; {valid}")
    for k in layers:
        if not 0 <= k < num_layers:
            raise ValueError(f"{role} target layer {k} is out of range; {valid}")
    for prev, k in zip(layers, layers[1:]):
        if k == prev:
            raise ValueError(f"{role} target layer {k} is duplicated in {layers}; {valid}")
        if k < prev:
            raise ValueError(f"{role} target layers must be sorted: {k} follows {prev} in {layers}; {valid}")
    if layers[-1] == num_layers - 1:
        # HF's last hidden state is already normed, and the final-layer term covers this layer anyway.
        log.warning(
            "%s target layers include the last decoder layer %d: its hidden state is already final-normed "
            "and the final-layer KL already uses the model's real logits", role, num_layers - 1,
        )
    return layers


# ---- persistence -----------------------------------------------------------------------------------
def save_verbalizers(verbalizers: Verbalizers, directory: str | Path, metadata: dict[str, Any]) -> None:
    """Write `verbalizers.safetensors` and `verbalizers.json` ({hidden_size, layers, residual, **metadata}).

    Each file is written atomically; the weights go first so a present JSON implies complete weights.
    `metadata` should identify what the verbalizers were trained for (e.g. checkpoint, data, step) —
    teacher verbalizers are cached and reused across students by it.
    """
    clash = [k for k in _RESERVED_KEYS if k in metadata]
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved by save_verbalizers")
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in verbalizers.state_dict().items()}
    write_bytes(directory / WEIGHTS_FILE, save_safetensors_bytes(state))
    config = {
        "hidden_size": verbalizers.hidden_size,
        "layers": verbalizers.layers,
        "residual": verbalizers.residual,
        **metadata,
    }
    write_json(directory / CONFIG_FILE, config)
    log.info("saved %d verbalizers (layers %s) to %s", len(verbalizers), verbalizers.layers, directory)


def load_verbalizers(directory: str | Path) -> tuple[Verbalizers, dict[str, Any]]:
    """Inverse of `save_verbalizers`: (Verbalizers in the saved dtype, on CPU; the metadata dict).

    Raises FileNotFoundError / ValueError naming the missing or unreadable file.
    """
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"verbalizer file missing: {path}")
    try:
        config = json.loads(config_path.read_text())
        hidden_size, layers, residual = (config.pop(k) for k in _RESERVED_KEYS)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"corrupt verbalizer config {config_path}: {err!r}") from err
    try:
        state = load_safetensors_bytes(weights_path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise ValueError(f"corrupt verbalizer weights {weights_path}: {err}") from err
    verbalizers = Verbalizers(int(hidden_size), [int(k) for k in layers], residual=bool(residual))
    if state:
        verbalizers.to(next(iter(state.values())).dtype)
    try:
        verbalizers.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"verbalizer weights {weights_path} do not match {config_path}: {err}") from err
    return verbalizers, config
