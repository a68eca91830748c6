"""The real vLLM logs kept in tests/data/vllm-logs follow the corpus convention and name no machine.

These read files only, so they run in the default test set, without vLLM.
"""

from __future__ import annotations

import re

import pytest

from tests.real_vllm import support

CORPUS = support.REPO_ROOT / "tests" / "data" / "vllm-logs"
REAL_LOGS = sorted(CORPUS.glob(f"real-cpu-{support.VLLM_VERSION}-*.txt"))
FIRST_LINE = re.compile(
    r"^# source: produced by the project's real-vLLM tests on the CPU build \([^,]*\), "
    r"vllm (?P<version>[^,\s]+), expected_outcome: (?P<outcome>[a-z_]+), "
    r"expected_max_model_len: (?P<length>\d+|null)$"
)
MACHINE_PATH = re.compile(r"/(?:root|home|work|Users)/|\.cache/aifred|\.pyenv|aifred-capture-")


def test_the_five_real_cases_are_kept():
    names = {path.name for path in REAL_LOGS}
    assert names == {
        f"real-cpu-{support.VLLM_VERSION}-{case}.txt"
        for case in ("refusal-1gib", "ready-1gib", "auto-fit-1gib", "yarn2-4gib", "port-in-use")
    }


@pytest.mark.parametrize("path", REAL_LOGS, ids=lambda path: path.name)
def test_a_real_log_starts_with_the_corpus_first_line(path):
    first = path.read_text().splitlines()[0]
    match = FIRST_LINE.match(first)
    assert match, first
    assert match["version"] == support.VLLM_VERSION
    assert match["outcome"] in {"ready", "context_too_long", "port_in_use"}


@pytest.mark.parametrize("path", REAL_LOGS, ids=lambda path: path.name)
def test_a_real_log_names_no_path_of_the_machine_it_ran_on(path):
    found = MACHINE_PATH.findall(path.read_text())
    assert not found, found[:5]


def test_the_refusal_log_holds_vllms_number_and_its_first_line_says_so():
    text = (CORPUS / f"real-cpu-{support.VLLM_VERSION}-refusal-1gib.txt").read_text()
    printed = re.search(r"estimated maximum model length is (\d+)", text).group(1)
    assert FIRST_LINE.match(text.splitlines()[0])["length"] == printed
