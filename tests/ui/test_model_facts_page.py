"""The model's admin page shows the facts vLLM derives, as the facts command prints them."""

from __future__ import annotations

import json
from pathlib import Path

from django.urls import reverse

from launches.vllm.modelinfo import facts_from_config
from tests.factories import make_model

CONFIG = Path(__file__).resolve().parents[1] / "data" / "model-configs" / "Phi-3.5-mini-instruct.json"


def test_the_model_page_shows_native_and_default_context_attention_kind_and_kv_bytes(client, viewer):
    model = make_model("microsoft/Phi-3.5-mini-instruct")
    facts = facts_from_config(json.loads(CONFIG.read_text()), model=model.source)
    model.apply_facts(facts.to_dict())
    model.refresh_from_db()
    assert (model.native_context, model.default_context) == (131072, 4096)
    assert (model.attention_kind, model.kv_bytes_per_token) == ("full", 393216)
    assert model.facts_vllm_version == "0.32.0"
    client.force_login(viewer)
    page = client.get(reverse("admin:gpus_modelspec_change", args=[model.pk])).content.decode()
    for text in ("131,072 tokens", "4,096 tokens", "Default context", "Attention kind", "393,216 bytes"):
        assert text in page, text
