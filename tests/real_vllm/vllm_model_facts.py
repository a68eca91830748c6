"""Run with the real vLLM's python: print what vLLM itself derives for each model folder given.

``python vllm_model_facts.py FOLDER...`` prints one JSON object per folder: ``native_context`` (the
longest ``--max-model-len`` vLLM accepts; null when the config names no length, as vLLM then accepts
any), ``default_context`` (what it starts at without one),
layers, KV heads and head size, computed by vLLM's own code: ``get_config`` and
``get_hf_text_config`` (vllm/transformers_utils/config.py), the architecture's convertor
(vllm/transformers_utils/model_arch_config_convertor.py) and ``_get_and_verify_max_len``
(vllm/config/model.py). The launcher's own code is never imported here.
"""

from __future__ import annotations

import json
import re
import sys

from vllm.config.model import _get_and_verify_max_len
from vllm.transformers_utils.config import get_config, get_hf_text_config
from vllm.transformers_utils.model_arch_config_convertor import (
    MODEL_ARCH_CONFIG_CONVERTORS,
    ModelArchConfigConvertorBase,
)

_DERIVED = re.compile(r"derived max_model_len \((\S+)=([\d.]+|inf) or model_max_length")


def facts(folder: str) -> dict:
    hf_config = get_config(folder, trust_remote_code=False)
    text = get_hf_text_config(hf_config)
    convertor = MODEL_ARCH_CONFIG_CONVERTORS.get(hf_config.model_type, ModelArchConfigConvertorBase)
    arch = convertor(hf_config, text).convert()

    def verify(max_model_len):
        return _get_and_verify_max_len(
            hf_config=text,
            model_arch_config=arch,
            tokenizer_config=None,
            max_model_len=max_model_len,
            disable_sliding_window=False,
            sliding_window=None,
        )

    default = verify(None)
    try:
        verify(10**9)
    except ValueError as exc:
        match = _DERIVED.search(str(exc))
        native = int(float(match.group(2)))
    else:
        native = None
    return {
        "folder": folder,
        "native_context": native,
        "default_context": int(default),
        "num_layers": arch.total_num_hidden_layers,
        "num_kv_heads": arch.total_num_kv_heads,
        "head_dim": arch.head_size,
    }


def main(folders: list[str]) -> int:
    for folder in folders:
        try:
            record = facts(folder)
        except Exception as exc:  # one model's failure must not hide the others'
            record = {"folder": folder, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
