"""A new operator's whole path in real Chromium, through the texts on the pages only.

Add a model by its folder, see its config.json read without asking, create a config on the auto-fit
host (vLLM 0.32.0), launch, stop, then launch on the two-stage host (vLLM 0.11.0, an RTX 3060). The
stack is real: Redis, the control worker, two GPU workers, the vLLM stand-in. Every answer the
browser gets is recorded; a 5xx, or a page showing NaN, "undefined" or a traceback, fails the test.
"""

from __future__ import annotations

import re
import shutil
from types import SimpleNamespace

import pytest
from django.urls import reverse

from tests.ui.test_browser import browser, log_in, page  # noqa: F401  (fixtures)
from tests.workers.conftest import DEMO_MODEL

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BROKEN_WORDS = re.compile(r"\bNaN\b|\bundefined\b|Traceback \(most recent call last\)")


@pytest.fixture
def journey_stack(live_server, tmp_path):
    """Redis, a control worker and two GPU workers: an H100 on vLLM 0.32.0 (auto-fit) and an RTX 3060
    on vLLM 0.11.0 (refusal, then a second start)."""
    from tests.workers.conftest import H100, RTX_3060, host_name, running_fleet
    from tests.workers.helpers import wait_for_host

    with running_fleet(tmp_path) as fleet:
        fleet.gpu_worker("lab-h100", H100, "0.32.0")
        fleet.gpu_worker("desk-3060", RTX_3060, "0.11.0")
        wait_for_host("lab-h100")
        wait_for_host("desk-3060")
        yield SimpleNamespace(
            fleet=fleet, auto_host=host_name("lab-h100"), two_stage_host=host_name("desk-3060")
        )


class Recorder:
    """Every response the browser received, and a check of every page's visible text."""

    def __init__(self, tab) -> None:
        self.page = tab
        self.responses: list[tuple[int, str]] = []
        tab.on("response", lambda response: self.responses.append((response.status, response.url)))

    def check(self) -> None:
        server_errors = [(status, url) for status, url in self.responses if status >= 500]
        assert not server_errors, f"the site answered with a server error: {server_errors}"
        self.page.wait_for_load_state("load")
        # vLLM's own log lines (pre.log) may hold its tracebacks: they are what vLLM printed.
        text = self.page.evaluate(
            """() => {
                if (!document.body) return "";
                const body = document.body.cloneNode(true);
                body.querySelectorAll("pre.log").forEach((log) => log.remove());
                return body.innerText;
            }"""
        )
        found = BROKEN_WORDS.search(text)
        assert found is None, f"{self.page.url} shows {found.group(0)!r}:\n{text[:2000]}"


def add_config(tab, live_server, name: str, model_label: str, host: str) -> None:
    tab.goto(live_server.url + reverse("admin:index"))
    tab.get_by_role("link", name="Launch configs").first.click()
    tab.get_by_role("link", name=re.compile("Add launch config")).click()
    tab.get_by_label("Name:", exact=True).fill(name)
    tab.get_by_label("Model:", exact=True).select_option(label=model_label)
    tab.get_by_label("Host:", exact=True).select_option(label=host)
    tab.get_by_label("Quantization:").fill("awq")
    tab.get_by_role("button", name="Save and continue editing").click()


def test_a_new_operator_adds_a_model_by_folder_launches_it_on_both_vllm_eras_and_stops_it(
    page,  # noqa: F811
    live_server,
    operator,
    journey_stack,
    tmp_path,
):
    from playwright.sync_api import expect

    recorder = Recorder(page)
    folder = tmp_path / "models" / "acme-8b-chat"
    shutil.copytree(DEMO_MODEL, folder)
    log_in(page, live_server, operator)
    recorder.check()

    # 1. Add the model by its folder; its native context appears on its page with no further action.
    page.get_by_role("link", name="Models").first.click()
    page.get_by_role("link", name=re.compile("Add model")).click()
    page.get_by_label("Source:").fill(str(folder))
    page.get_by_role("button", name="Save and continue editing").click()
    recorder.check()
    expect(page.locator("#content")).to_contain_text("40,960 tokens", timeout=30_000)
    expect(page.locator("body")).to_contain_text("Read at", timeout=5_000)
    recorder.check()

    # 2. A config for it on the auto-fit host; launch; the live page reaches the served context.
    add_config(page, live_server, "acme on the H100", str(folder), journey_stack.auto_host)
    expect(page.locator(".messagelist .success")).to_be_visible()
    recorder.check()
    page.get_by_role("button", name="Launch", exact=True).click()
    page.wait_for_url(re.compile(r"/launches/\d+/live/$"))
    result = page.locator('[data-role="result"]')
    expect(result).to_contain_text("Serving at http://", timeout=60_000)
    expect(result).to_contain_text("40,960 tokens")
    # The config left its port empty: the host's worker picked one of its range (8100-8199).
    expect(result).to_contain_text(re.compile(r"Serving at http://[^ ]+:81\d\d "))
    expect(page.locator('[data-role="status"]')).to_have_text("Running")
    recorder.check()

    # 3. Stop: back on the live page, which ends "Stopped" with no Stop left to press.
    page.get_by_role("link", name=re.compile("^Stop")).click()
    page.get_by_role("button", name=re.compile("Yes")).click()
    page.wait_for_url(re.compile(r"/launches/\d+/live/$"))
    expect(page.locator('[data-role="status"]')).to_have_text("Stopped", timeout=60_000)
    expect(result).to_contain_text("Stopped by olivia-operator")
    expect(result).not_to_contain_text("Serving at")
    expect(page.get_by_role("link", name=re.compile("^Stop"))).to_have_count(0)
    recorder.check()

    # 4. The two-stage host: vLLM 0.11.0 refuses the native context, then serves what it printed.
    add_config(page, live_server, "acme on the 3060", str(folder), journey_stack.two_stage_host)
    page.get_by_role("button", name="Launch", exact=True).click()
    page.wait_for_url(re.compile(r"/launches/\d+/live/$"))
    expect(result).to_contain_text("27,168 tokens", timeout=90_000)
    expect(page.locator('section.attempt[data-attempt="1"] .verdict')).to_contain_text("KV cache too small")
    recorder.check()
    page.get_by_role("link", name=re.compile("^Stop")).click()
    page.get_by_role("button", name=re.compile("Yes")).click()
    expect(page.locator('[data-role="status"]')).to_have_text("Stopped", timeout=60_000)
    recorder.check()


def test_a_host_without_gpus_says_so_on_the_fleet_and_a_config_for_its_gpu_is_refused_saying_why(
    page,  # noqa: F811
    live_server,
    operator,
    tmp_path,
):
    """A real GPU worker on a machine without an NVIDIA driver, whose vLLM command does not exist."""
    from playwright.sync_api import expect

    from gpus.models import Host
    from gpus.nvml import read_inventory_or_empty
    from tests.workers.conftest import host_name, running_fleet, wait_for

    if read_inventory_or_empty().gpus:
        pytest.skip("this machine has an NVIDIA GPU")
    with running_fleet(tmp_path) as fleet:
        fleet.gpu_worker("bare-vm", "", "0.11.0", AIFRED_VLLM_COMMAND="no-such-vllm serve")
        name = host_name("bare-vm")
        wait_for(lambda: Host.objects.filter(name=name).exclude(vllm_error="").exists(), 40, "its report")
        recorder = Recorder(page)
        log_in(page, live_server, operator)
        page.get_by_role("link", name="Fleet").first.click()
        card = page.locator("section.host-card", has_text=name)
        expect(card).to_contain_text("no NVIDIA driver found")
        expect(card).to_contain_text("vLLM not found")
        recorder.check()

        page.get_by_role("link", name="Models").first.click()
        page.get_by_role("link", name=re.compile("Add model")).click()
        page.get_by_label("Source:").fill(str(DEMO_MODEL))
        page.get_by_role("button", name="Save and continue editing").click()
        expect(page.locator("#content")).to_contain_text("40,960 tokens", timeout=30_000)
        # A config for a card the host does not have is refused where it is made, saying why.
        add_config(page, live_server, "demo on the bare VM", str(DEMO_MODEL), name)
        error = page.locator(".errorlist")
        expect(error).to_contain_text(f"GPU 0 is not on {name}: its worker reported no GPUs")
        expect(error).to_contain_text("no NVIDIA driver found")
        expect(error).to_contain_text("vLLM not found")
        recorder.check()
