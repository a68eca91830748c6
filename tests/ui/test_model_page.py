"""A model is read when it is added: the form checks the source, saving queues the reading of its
config.json, and the model's page says how that went, in words, with a button to read it again.

The reading itself runs here as the control worker runs it (the task, called in this process); the
on-commit callbacks that would send it are captured, since the default run has no broker.
"""

from __future__ import annotations

import shutil

import pytest
from django.urls import reverse

from gpus.models import ModelSpec
from launches import tasks
from launches.models import Launch, LaunchRefused
from tests.factories import make_config, make_model
from tests.workers.conftest import DEMO_MODEL

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:gpus_modelspec_add")


def add_model(client, source: str, revision: str = ""):
    return client.post(ADD_URL, {"source": source, "revision": revision})


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("/nowhere/models/qwen", "There is no folder /nowhere/models/qwen on this machine"),
        ("../../etc", "../../etc is relative"),
        ("not a repo id!", "is neither a local folder nor a valid Hugging Face repo id"),
        ("org/name/extra", "is neither a local folder nor a valid Hugging Face repo id"),
    ],
)
def test_the_form_refuses_a_source_that_is_neither_a_folder_here_nor_a_repo_id(
    client, operator, source, words
):
    client.force_login(operator)
    response = add_model(client, source)
    assert response.status_code == 200
    assert words in response.content.decode()
    assert not ModelSpec.objects.exists()


def test_a_relative_folder_that_looks_like_a_repo_id_is_refused_with_its_absolute_path(
    client, operator, tmp_path, monkeypatch
):
    (tmp_path / "nc-models" / "mymodel").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    client.force_login(operator)
    response = add_model(client, "nc-models/mymodel")
    text = response.content.decode()
    assert "nc-models/mymodel is a folder relative to where the site runs" in text
    assert str(tmp_path / "nc-models" / "mymodel") in text
    assert not ModelSpec.objects.exists()


def test_a_refusal_message_keeps_the_model_name_as_written(client, operator, config):
    ModelSpec.objects.filter(pk=config.model_id).update(
        source="nc-models/mymodel", facts_status="error", facts_error="Repository Not Found."
    )
    client.force_login(operator)
    response = client.post(reverse("admin:launches_launchconfig_launch", args=[config.pk]), follow=True)
    html = response.content.decode()
    assert '<li class="error">nc-models/mymodel cannot be launched: Repository Not Found.</li>' in html


def test_the_form_refuses_a_folder_without_config_json(client, operator, tmp_path):
    client.force_login(operator)
    response = add_model(client, str(tmp_path))
    assert "has no config.json" in response.content.decode()
    assert not ModelSpec.objects.exists()


def test_saving_a_model_queues_the_reading_of_its_config_json_and_its_page_follows(
    client, operator, tmp_path, django_capture_on_commit_callbacks
):
    folder = shutil.copytree(DEMO_MODEL, tmp_path / "acme-8b")
    client.force_login(operator)
    with django_capture_on_commit_callbacks() as callbacks:
        response = add_model(client, str(folder))
    assert response.status_code == 302
    model = ModelSpec.objects.get()
    assert model.facts_status == "reading"
    assert len(callbacks) == 1, "the reading is sent to the control worker once, at commit"
    page = client.get(reverse("admin:gpus_modelspec_change", args=[model.pk])).content.decode()
    assert "Reading config.json…" in page
    assert "window.location.reload" in page, "the page follows the reading by itself"

    assert tasks.read_model_facts(model.pk)
    page = client.get(reverse("admin:gpus_modelspec_change", args=[model.pk])).content.decode()
    assert "40,960 tokens" in page
    assert "Read at " in page and "window.location.reload" not in page
    assert "Read config.json again" in page


def test_a_malformed_config_json_ends_as_a_sentence_on_the_page_and_launch_says_exactly_that(
    client, operator, tmp_path, django_capture_on_commit_callbacks
):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text('{"max_position_embeddings": 40960,')
    client.force_login(operator)
    with django_capture_on_commit_callbacks():
        add_model(client, str(folder))
    model = ModelSpec.objects.get()
    assert not tasks.read_model_facts(model.pk)
    model.refresh_from_db()
    assert model.facts_status == "error"
    page = client.get(reverse("admin:gpus_modelspec_change", args=[model.pk])).content.decode()
    assert f"Could not be read: {model.facts_error}" in page.replace("&#x27;", "'")
    assert "Traceback" not in page

    config = make_config(model=model)
    with pytest.raises(LaunchRefused) as refusal:
        Launch.objects.start(config, operator)
    assert str(refusal.value) == f"{model} cannot be launched: {model.facts_error}"


def test_a_repo_that_is_not_cached_while_downloads_are_off_ends_as_a_sentence(operator, settings):
    settings.HF_HUB_ALLOW_DOWNLOAD = False
    model = make_model("acme-no-such-org/no-such-model-7b", native_context=None)
    assert not tasks.read_model_facts(model.pk)
    model.refresh_from_db()
    assert model.facts_status == "error"
    assert "not in the Hugging Face cache" in model.facts_error
    assert "Traceback" not in model.facts_error


def test_read_again_is_a_button_for_operators_and_a_list_action(
    client, operator, viewer, django_capture_on_commit_callbacks
):
    model = make_model(str(DEMO_MODEL), native_context=None)
    url = reverse("admin:gpus_modelspec_read_again", args=[model.pk])
    client.force_login(viewer)
    assert client.post(url).status_code == 403
    assert (
        "Read config.json again"
        not in client.get(reverse("admin:gpus_modelspec_change", args=[model.pk])).content.decode()
    )

    client.force_login(operator)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url)
    assert response.status_code == 302
    assert len(callbacks) == 1
    model.refresh_from_db()
    assert model.facts_status == "reading"

    ModelSpec.objects.filter(pk=model.pk).update(facts_status="read")
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(
            reverse("admin:gpus_modelspec_changelist"),
            {"action": "read_again_selected", "_selected_action": [model.pk]},
        )
    assert len(callbacks) == 1
    model.refresh_from_db()
    assert model.facts_status == "reading"


@pytest.mark.parametrize(
    ("error", "words"),
    [
        ("GatedRepoError", "is a gated repository"),
        ("RepositoryNotFoundError", "does not exist or is private"),
    ],
)
def test_a_gated_or_missing_repo_without_hf_token_ends_as_a_sentence_that_names_hf_token(
    operator, settings, monkeypatch, error, words
):
    """The hub's answer is played by raising its own error type (no network in the suite)."""
    import httpx2 as httpx
    import huggingface_hub
    from huggingface_hub import errors

    def hub_says(*args, local_files_only=False, **kwargs):
        if local_files_only:
            raise errors.LocalEntryNotFoundError("not in the cache")
        response = httpx.Response(401, request=httpx.Request("GET", "https://huggingface.co/acme/llm"))
        raise getattr(errors, error)("refused", response=response)

    settings.HF_TOKEN = None
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub_says)
    model = make_model("acme/llm-7b", native_context=None)
    assert not tasks.read_model_facts(model.pk)
    model.refresh_from_db()
    assert words in model.facts_error
    assert "The site has no HF_TOKEN" in model.facts_error
    assert "Traceback" not in model.facts_error
