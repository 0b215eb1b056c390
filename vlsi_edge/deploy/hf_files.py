"""The files beside onnx/ that a Hugging Face client needs to run an export (transformers.js, transformers).

    config.json                  model config (image_token_id, text_config with the decoder's sizes; Qwen2-VL's
                                 decoder keys at the top level too, where transformers.js reads them)
    generation_config.json       stop token = the family's end-of-turn token; max_new_tokens (the target's), so a
                                 client that sets no length gets whole answers (the library default, max_length 20,
                                 is shorter than the prompt)
    preprocessor_config.json     the image processor (pinned to the programs' one input size), plus the processor
                                 class that wraps it (LLaVA: the image processor class transformers.js knows)
    processor_config.json        processor settings (Idefics3: top-level image_seq_len)
    tokenizer.json               the byte-level BPE with its special tokens
    tokenizer_config.json        special tokens and the family's chat template, inline
    chat_template.jinja          the same template, where transformers' processor saves one

transformers.js reads the chat template only from tokenizer_config.json, and picks its processor
class from preprocessor_config.json["processor_class"] (docs/EXPORT_RESEARCH.md §2.3). transformers
5 saves neither by default, hence the explicit steps below.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

from transformers import PreTrainedModel, ProcessorMixin

from vlsi_edge.atomic import write_json
from vlsi_edge.families import Family


def write_hf_files(model: PreTrainedModel, family: Family, processor, out_dir: str | Path,
                   max_new_tokens: int = 40) -> list[Path]:
    """Write the configs, processor and tokenizer files into out_dir; returns the paths written.

    Everything is saved into a staging directory first and each file is then moved into place
    (one rename each), so a reader never sees half a file. The caller's processor is not changed.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = copy.deepcopy(processor)
    tokenizer = family.tokenizer(processor)
    tokenizer.chat_template = family.chat_template()
    tokenizer.eos_token = family.eos_token
    if isinstance(processor, ProcessorMixin):
        processor.chat_template = tokenizer.chat_template
    generation = copy.deepcopy(model.generation_config)
    generation.eos_token_id = tokenizer.convert_tokens_to_ids(family.eos_token)
    generation.max_new_tokens = max_new_tokens

    with tempfile.TemporaryDirectory(dir=out, prefix=".hf_files.") as tmp:
        staging = Path(tmp)
        model.config.save_pretrained(staging)
        generation.save_pretrained(staging)
        processor.save_pretrained(staging)
        tokenizer.save_pretrained(staging, save_jinja_files=False)
        preprocessor = json.loads(processor.image_processor.to_json_string())
        if isinstance(processor, ProcessorMixin):
            preprocessor["processor_class"] = type(processor).__name__
        write_json(staging / "preprocessor_config.json", family.client_preprocessor(preprocessor, processor))
        config = json.loads((staging / "config.json").read_text())
        write_json(staging / "config.json", family.client_config(config))
        written = []
        for path in sorted(staging.iterdir()):
            if not path.is_file():
                raise RuntimeError(f"unexpected {path.name}/ among the saved processor files")
            os.replace(path, out / path.name)
            written.append(out / path.name)
    return written
