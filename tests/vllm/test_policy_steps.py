"""The launcher's decision after each attempt, as a table: no processes, no clock, no events."""

from __future__ import annotations

import pytest

from launches.contract import Outcome, is_ceiling
from launches.vllm.logs import Verdict
from launches.vllm.policy import Known, Step, first_length, next_step

SAID = "vLLM said so"


def known(outcome: Outcome, requested: int | str = 131072, **values) -> Known:
    verdict_keys = ("max_model_len", "auto_fit_len", "derived_max_model_len", "max_num_seqs_printed")
    numbers = {key: values.pop(key) for key in verdict_keys if key in values}
    if "max_num_seqs_printed" in numbers:
        numbers["max_num_seqs"] = numbers.pop("max_num_seqs_printed")
    values.setdefault("message", SAID)
    return Known(
        verdict=Verdict(outcome, **numbers),
        requested=requested,
        wanted=values.pop("wanted", 131072),
        number=values.pop("number", 1),
        max_attempts=values.pop("max_attempts", 3),
        **values,
    )


@pytest.mark.parametrize(
    ("case", "step"),
    [
        pytest.param(
            known(Outcome.CONTEXT_TOO_LONG, max_model_len=40970),
            Step("start", 40960, learned=40960, learned_from="refusal", announce=True, refused=True),
            id="a refusal with a number restarts at it rounded down to the block and learns it as a ceiling",
        ),
        pytest.param(
            known(Outcome.CONTEXT_TOO_LONG),
            Step("fail", reason="vLLM said so; no smaller length to try"),
            id="a refusal without a number fails: there is nothing smaller to try",
        ),
        pytest.param(
            known(Outcome.CONTEXT_TOO_LONG, 32768, max_model_len=40000),
            Step("fail", reason="vLLM said so; no smaller length to try"),
            id="a refused number that is not below the request is not a length to try",
        ),
        pytest.param(
            known(Outcome.AUTO_FIT, "auto", max_model_len=65536, wanted=131072),
            Step("start", 65536, learned=65536, learned_from="auto_fit", announce=True, refused=True),
            id="auto-fit refusing at a number learns it from auto-fit",
        ),
        pytest.param(
            known(Outcome.READY, "auto", auto_fit_len=98304, served=98304, wanted=65536),
            Step("start", 65536, learned=98304, learned_from="auto_fit", stop_ready=True),
            id="auto-fit above the cap stops the ready server and starts again at the cap",
        ),
        pytest.param(
            known(Outcome.READY, "auto", auto_fit_len=98304, served=98304, wanted=65536, number=3),
            Step("ready", 98304, outcome="ready", reason=SAID, learned=98304, learned_from="auto_fit"),
            id="auto-fit above the cap on the last attempt serves what it chose",
        ),
        pytest.param(
            known(Outcome.LENGTH_ABOVE_MODEL, derived_max_model_len=32768),
            Step("start", 32768),
            id="a length above the model without YaRN retries at the model's own length",
        ),
        pytest.param(
            known(Outcome.LENGTH_ABOVE_MODEL, derived_max_model_len=32768, with_yarn=True),
            Step("fail", reason=SAID),
            id="a length above the model with YaRN fails: the overrides should have raised it",
        ),
        pytest.param(
            known(Outcome.READY, served=131072),
            Step("ready", 131072, outcome="ready", reason=SAID, learned_from="fits"),
            id="a length that fits is served and kept as a floor, not a ceiling",
        ),
        pytest.param(
            known(
                Outcome.READY, 40960, served=40960, refused_before=True, learned=40960, learned_from="refusal"
            ),
            Step("ready", 40960, outcome="ready", reason=SAID, learned=40960, learned_from="refusal"),
            id="ready after a refusal confirms the refused number as the ceiling",
        ),
        pytest.param(
            known(Outcome.GPU_BUSY),
            Step("fail", reason=SAID),
            id="a busy GPU fails at once and teaches nothing",
        ),
        pytest.param(
            known(Outcome.WEIGHTS_DO_NOT_FIT),
            Step("fail", reason=SAID),
            id="weights that do not fit fail at once and teach nothing",
        ),
        pytest.param(
            known(
                Outcome.CONTEXT_TOO_LONG, stopped_by=Outcome.TIMEOUT, learned=40960, learned_from="refusal"
            ),
            Step("fail", outcome="timeout", reason=SAID, learned=40960, learned_from="refusal"),
            id="a timeout fails with its own outcome and keeps what was learned",
        ),
        pytest.param(
            known(Outcome.READY, stopped_by=Outcome.CANCELLED),
            Step("fail", outcome="cancelled", reason=SAID),
            id="a cancel fails as cancelled whatever vLLM said",
        ),
        pytest.param(
            known(Outcome.CONTEXT_TOO_LONG, max_model_len=40960, number=3),
            Step(
                "fail",
                reason="vLLM said so; gave up after 3 attempts",
                learned=40960,
                learned_from="refusal",
                announce=True,
                refused=True,
            ),
            id="a refusal on the last attempt still announces its number, then gives up",
        ),
        pytest.param(
            known(Outcome.MAX_NUM_SEQS_TOO_HIGH, max_num_seqs_printed=64),
            Step("start", 131072, max_num_seqs=64),
            id="too many sequences restarts at the same length with the count vLLM named",
        ),
        pytest.param(
            known(Outcome.MAX_NUM_SEQS_TOO_HIGH, max_num_seqs_printed=64, max_num_seqs=64),
            Step("fail", reason=SAID, max_num_seqs=64),
            id="too many sequences again at the count vLLM named fails",
        ),
        pytest.param(
            known(Outcome.PORT_IN_USE, 40960, picked_port=8100, learned=40960, learned_from="refusal"),
            Step(
                "start",
                40960,
                reason="Port 8100 was taken by another process before vLLM could bind it; the host's next "
                "free port is tried.",
                learned=40960,
                learned_from="refusal",
                new_port=True,
            ),
            id="a picked port taken at vLLM's bind starts again at the same length on the next port",
        ),
        pytest.param(
            known(Outcome.PORT_IN_USE),
            Step("fail", reason=SAID),
            id="a port from the config, taken at vLLM's bind, fails at once",
        ),
        pytest.param(
            known(Outcome.PORT_IN_USE, picked_port=8102, number=3),
            Step(
                "fail",
                reason="Port 8102 was taken by another process before vLLM could bind it; gave up after 3 "
                "attempts. Free some ports of the host's port range (AIFRED_PORT_RANGE) or give each host "
                "on this machine its own range.",
            ),
            id="a picked port taken on the last attempt gives up and names the host's port range",
        ),
    ],
)
def test_the_step_after_an_attempt(case: Known, step: Step) -> None:
    assert next_step(case) == step


@pytest.mark.parametrize(
    ("wanted", "values", "length"),
    [
        pytest.param(131072, {"known_limit": 40960}, 40960, id="a known limit wins"),
        pytest.param(32768, {"known_limit": 40960}, 32768, id="a known limit above the wanted length"),
        pytest.param(32768, {}, "auto", id="auto-fit where it can reach the wanted length"),
        pytest.param(32768, {"with_yarn": True}, 32768, id="no auto-fit with YaRN"),
        pytest.param(131072, {"default": 4096}, 131072, id="no auto-fit above vLLM's default length"),
        pytest.param(32768, {"version": "0.11.0"}, 32768, id="no auto-fit before vLLM 0.14"),
        pytest.param(
            32768, {"version": "0.11.0", "ceiling_hint": 20010}, 20000, id="a ceiling hint, rounded"
        ),
    ],
)
def test_the_first_start(wanted: int, values: dict, length: int | str) -> None:
    arguments = {"version": "0.32.0", "default": 32768, "with_yarn": False, **values}
    assert first_length(wanted, **arguments) == length


def test_refusals_and_auto_fit_teach_ceilings_and_a_length_that_fits_a_floor() -> None:
    assert is_ceiling("refusal") and is_ceiling("auto_fit")
    assert not is_ceiling("fits") and not is_ceiling(None)
