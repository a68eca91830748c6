"""Real vLLM 0.32.0's own code is the oracle for every real config.json in the corpus.

vLLM's ``get_config``, its architecture convertors and ``_get_and_verify_max_len`` run inside the
vLLM virtualenv (``vllm_model_facts.py``); the product's reading must give the same numbers, and
the numbers recorded for the default suite must still be vLLM's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.vllm.test_model_configs import CONFIG_DIR, RECORDED, mismatches

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(600)]

ORACLE = Path(__file__).resolve().parent / "vllm_model_facts.py"


@pytest.fixture(scope="module")
def vllm_numbers(vllm_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("model-configs")
    folders = []
    for path in sorted(CONFIG_DIR.glob("*.json")):
        folder = root / path.stem
        folder.mkdir()
        shutil.copy(path, folder / "config.json")
        folders.append(str(folder))
    done = subprocess.run(
        [vllm_python, str(ORACLE), *folders],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {Path(record.pop("folder")).name + ".json": record for record in records}


def test_real_vllm_reads_every_corpus_config(vllm_numbers: dict[str, dict]) -> None:
    errors = {name: record["error"] for name, record in vllm_numbers.items() if "error" in record}
    assert errors == {}
    assert len(vllm_numbers) >= 20


def test_the_product_derives_what_real_vllm_derives(vllm_numbers: dict[str, dict]) -> None:
    found = [line for name, record in sorted(vllm_numbers.items()) for line in mismatches(name, record)]
    assert found == [], "\n".join(found)


def test_the_numbers_recorded_for_the_default_suite_are_real_vllms(vllm_numbers: dict[str, dict]) -> None:
    assert vllm_numbers == RECORDED
