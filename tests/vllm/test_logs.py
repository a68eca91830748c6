"""vLLM output of every version is classified into the outcome and the length that fits."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from launches.vllm.logs import LogWatcher, Outcome, classify
from tests.vllm.conftest import CORPUS_DIR

CORPUS = sorted(CORPUS_DIR.glob("*.txt"))
EXPECTED = re.compile(r"expected_outcome: (\w+), expected_max_model_len: (\w+)")


def expectation(path) -> tuple[str, int | None]:
    outcome, length = EXPECTED.search(path.read_text().splitlines()[0]).groups()
    return outcome, None if length == "null" else int(length)


def test_the_cli_reads_every_corpus_log_as_its_first_line_expects() -> None:
    assert len(CORPUS) >= 10
    done = subprocess.run(
        [sys.executable, "-m", "launches.vllm.logs", *map(str, CORPUS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == len(CORPUS)
    for path, record in zip(CORPUS, records, strict=True):
        assert {"file", "outcome", "max_model_len", "kv_capacity_tokens", "vllm_version", "message"} <= set(
            record
        )
        assert (record["outcome"], record["max_model_len"]) == expectation(path), path.name


PREFIXES = [
    "",
    "[rank0]: ",
    "vllm-1  | ",
    "(EngineCore_DP0 pid=12) ERROR 10-31 15:07:50 [core.py:708] ",
    "\x1b[1;36m(EngineCore_DP0 pid=12)\x1b[0;0m ERROR 10-31 15:07:50 [core.py:708] ",
]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_estimate_is_found_behind_any_prefix(prefix: str) -> None:
    line = (
        f"{prefix}ValueError: To serve at least one request with the models's max seq len (40960), "
        "(5.62 GiB KV cache is needed, which is larger than the available KV cache memory (3.73 GiB). "
        "Based on the available memory, the estimated maximum model length is 26624. Try increasing "
        "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.\r"
    )
    verdict = classify([line], exit_code=1)
    assert verdict.outcome == Outcome.CONTEXT_TOO_LONG
    assert (verdict.max_model_len, verdict.requested_len) == (26624, 40960)
    assert verdict.message == "KV cache too small for 40,960 tokens; vLLM says 26,624 fit"


def test_the_0_8_4_message_without_a_number_gives_an_approximation_from_the_gib_figures() -> None:
    line = (
        "ValueError: To serve at least one request with the models's max seq len (40960), (5.62 GiB KV "
        "cache is needed, which is larger than the available KV cache memory (3.73 GiB). Based on the "
        "available memory,  Try increasing `gpu_memory_utilization` or decreasing `max_model_len` "
        "when initializing the engine."
    )
    verdict = classify(line)
    assert verdict.outcome == Outcome.CONTEXT_TOO_LONG
    assert verdict.max_model_len == 27120
    assert verdict.max_model_len % 16 == 0


def test_the_0_7_gb_wording_is_read_like_gib() -> None:
    line = (
        "To serve at least one request with the models's max seq len (32768), (4.00 GB KV cache is "
        "needed, which is larger than the available KV cache memory (2.00 GB)."
    )
    assert classify(line).max_model_len == 16320


@pytest.mark.parametrize(
    ("line", "outcome"),
    [
        (
            "ValueError: Free memory on device cuda:1 (19.77/22.05 GiB) on startup is less than desired GPU "
            "memory utilization (0.9, 19.84 GiB). Decrease GPU memory utilization",
            Outcome.GPU_BUSY,
        ),
        (
            "ValueError: Free memory on device (3.22/4.0 GiB) on startup is less than the engine's budget "
            "after excluding external process's weights (0.9, 3.6 GiB).",
            Outcome.GPU_BUSY,
        ),
        (
            "ERROR x [linear.py:210] Failed to load model - not enough GPU memory. Try lowering",
            Outcome.WEIGHTS_DO_NOT_FIT,
        ),
        (
            "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 518.00 MiB. GPU 0 has a "
            "total "
            "capacty of 21.67 GiB",
            Outcome.WEIGHTS_DO_NOT_FIT,
        ),
        ("ValueError: No available memory for the cache blocks. Try increasing", Outcome.WEIGHTS_DO_NOT_FIT),
        (
            "ValueError: Cannot auto-fit max_model_len: not enough GPU memory available to serve even a "
            "single token.",
            Outcome.WEIGHTS_DO_NOT_FIT,
        ),
        ("OSError: [Errno 98] Address already in use", Outcome.PORT_IN_USE),
        (
            "ERROR:    [Errno 98] error while attempting to bind on address ('0.0.0.0', 8000): address "
            "already in use",
            Outcome.PORT_IN_USE,
        ),
        ("huggingface_hub.errors.RepositoryNotFoundError: 401 Client Error.", Outcome.MODEL_NOT_FOUND),
        (
            "OSError: acme/x is not a local folder and is not a valid model identifier listed on "
            "'https://huggingface.co/models'",
            Outcome.MODEL_NOT_FOUND,
        ),
        ("OSError: /m does not appear to have a file named config.json.", Outcome.MODEL_NOT_FOUND),
        ("OSError: You are trying to access a gated repo.", Outcome.MODEL_NOT_FOUND),
        (
            "huggingface_hub.errors.HFValidationError: Repo id must be in the form 'repo_name' or "
            "'namespace/repo_name': '/models/x'. Use `repo_type` argument if needed.",
            Outcome.MODEL_NOT_FOUND,
        ),
        (
            "ValueError: Invalid repository ID or local directory specified: '/models/x'.",
            Outcome.MODEL_NOT_FOUND,
        ),
        (
            "INFO 05-01 10:00:00 [worker.py:267] Memory profiling takes 4.1 seconds; the rest of the memory "
            "reserved for KV Cache is -1.23GiB.",
            Outcome.WEIGHTS_DO_NOT_FIT,
        ),
        (
            "INFO 05-01 10:00:00 [executor_base.py:111] # cuda blocks: 0, # CPU blocks: 2048",
            Outcome.WEIGHTS_DO_NOT_FIT,
        ),
        (
            "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
            Outcome.CRASHED,
        ),
    ],
)
def test_each_failure_wording_has_its_outcome_and_teaches_no_length(line: str, outcome: Outcome) -> None:
    verdict = classify([f"(APIServer pid=7) {line}"], exit_code=1)
    assert verdict.outcome == outcome
    assert verdict.max_model_len is None


def test_a_length_above_the_model_reports_the_derived_length_even_as_a_float() -> None:
    line = (
        "  Value error, User-specified max_model_len (131072) is greater than the derived max_model_len "
        "(max_position_embeddings=40960.0 or model_max_length=None in model's config.json). To allow"
    )
    verdict = classify(line)
    assert verdict.outcome == Outcome.LENGTH_ABOVE_MODEL
    assert (verdict.derived_max_model_len, verdict.requested_len) == (40960, 131072)


def test_a_ready_v1_log_reports_capacity_concurrency_and_configured_length() -> None:
    log = """(APIServer pid=1) INFO 10-03 16:22:00 [api_server.py:1839] vLLM API server version 0.10.2
(APIServer pid=1) INFO 10-03 16:22:01 [config.py:1] Using max model len 32768
(EngineCore_0 pid=2) INFO 10-03 16:22:17 [kv_cache_utils.py:864] GPU KV cache size: 42,656 tokens
(EngineCore_0 pid=2) INFO [kv_cache_utils.py:868] Maximum concurrency for 32,768 tokens per request: 1.30x
(APIServer pid=1) INFO:     Application startup complete."""
    verdict = classify(log)
    assert verdict.outcome == Outcome.READY
    assert (verdict.max_model_len, verdict.kv_capacity_tokens) == (32768, 42656)
    assert (verdict.max_concurrency, verdict.vllm_version) == (1.30, "0.10.2")


def test_a_ready_v0_log_counts_blocks_of_sixteen_tokens() -> None:
    verdict = classify(
        [
            "INFO 11-01 gpu_executor.py:122] # GPU blocks: 1478, # CPU blocks: 2048",
            "INFO:     Application startup complete.",
        ]
    )
    assert verdict.kv_capacity_tokens == 1478 * 16


def test_an_auto_fit_start_is_ready_with_the_reduced_length() -> None:
    verdict = classify(
        [
            "Auto-fit max_model_len: reduced from 40960 to 32640 to fit in available KV cache memory "
            "(1.0 GiB CPU)",
            "CPU KV cache size: 32,768 tokens, Maximum concurrency for 32,640 tokens per request: 1.00x",
            "INFO:     Application startup complete.",
        ]
    )
    assert (verdict.outcome, verdict.max_model_len, verdict.auto_fit_len) == (Outcome.READY, 32640, 32640)
    assert verdict.kv_capacity_tokens == 32768


def test_an_auto_fit_start_that_never_became_ready_keeps_the_learned_length() -> None:
    verdict = classify(["Auto-fit max_model_len: reduced from 40960 to 32640 to fit in available GPU memory"])
    assert (verdict.outcome, verdict.max_model_len) == (Outcome.AUTO_FIT, 32640)


def test_the_watcher_decides_on_the_refusal_line_before_the_process_ends() -> None:
    watcher = LogWatcher()
    assert (
        watcher.feed("(EngineCore_DP0 pid=5) ERROR 10-31 [core.py:708] EngineCore failed to start.") is None
    )
    verdict = watcher.feed(
        "ValueError: The model's max seq len (40960) is larger than the maximum number of "
        "tokens that can be stored in KV cache (23648). Try increasing"
    )
    assert verdict is not None and verdict.max_model_len == 23648
    assert watcher.feed("RuntimeError: Engine core initialization failed.") is None


def test_a_log_that_ends_without_any_known_line_is_a_crash_with_its_exit_code() -> None:
    verdict = classify(["something odd"], exit_code=3)
    assert verdict.outcome == Outcome.CRASHED
    assert "code 3" in verdict.message


def test_a_bind_error_after_startup_complete_wins_over_ready() -> None:
    watcher = LogWatcher()
    assert watcher.feed("INFO:     Application startup complete.").outcome == Outcome.READY
    verdict = watcher.feed(
        "ERROR:    [Errno 98] error while attempting to bind on address ('0.0.0.0', 8080): "
        "address already in use"
    )
    assert verdict is not None and verdict.outcome == Outcome.PORT_IN_USE
    assert watcher.verdict().outcome == Outcome.PORT_IN_USE


def test_retrying_with_a_new_port_does_not_end_a_start() -> None:
    verdict = classify(
        [
            "(EngineCore pid=3) WARNING 11-27 09:52:44 [utils.py:42] "
            "Address already in use. Retrying with a new port.",
            "(APIServer pid=2) INFO:     Application startup complete.",
        ]
    )
    assert verdict.outcome == Outcome.READY


def test_the_version_is_read_from_the_0_15_logo() -> None:
    logo = "\u2584\u2584 \u2584\u2588 \u2588"
    line = f"(APIServer pid=9) INFO 11-27 09:52:32 [api_utils.py:347]  {logo}  version 0.32.0"
    assert classify([line]).vllm_version == "0.32.0"


def test_a_mamba_cache_refusal_names_the_max_num_seqs_that_fits() -> None:
    verdict = classify(
        ["ValueError: max_num_seqs (1024) exceeds available Mamba cache blocks (969)."], exit_code=1
    )
    assert (verdict.outcome, verdict.max_num_seqs, verdict.max_model_len) == (
        Outcome.MAX_NUM_SEQS_TOO_HIGH,
        969,
        None,
    )


def test_a_hybrid_model_that_serves_above_its_logged_kv_capacity_is_ready_at_its_length() -> None:
    verdict = classify((CORPUS_DIR / "issue-28228-v0.11.x.txt").read_text().splitlines()[1:])
    assert (verdict.outcome, verdict.max_model_len, verdict.kv_capacity_tokens) == (
        Outcome.READY,
        120000,
        75840,
    )


def test_real_0_32_logs_carry_their_version() -> None:
    verdict = classify((CORPUS_DIR / "real-cpu-0.32.0-ready-1gib.txt").read_text().splitlines()[1:])
    assert verdict.vllm_version == "0.32.0"
