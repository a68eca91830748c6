"""The 403 page: under the site's own title, saying what was refused and who may do it; and no
link on the start page leads to a page that would answer 403."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_a_refusal_uses_the_site_title_and_names_the_role(client, viewer, config):
    client.force_login(viewer)
    response = client.get(reverse("admin:launches_launchconfig_add"))
    assert response.status_code == 403
    text = response.content.decode()
    assert "Django administration" not in text
    assert "<title>Not allowed | AIfred Launch Control</title>" in text
    assert "Only operators may add launch configs." in text


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (reverse("admin:launches_launchevent_add"), "Nobody may add launch events"),
        (reverse("admin:gpus_host_add"), "Only administrators may add hosts."),
        (reverse("launches:fleet"), "You have no role that may see launches"),
    ],
)
def test_each_refusal_says_what_was_refused(client, operator, outsider, url, words):
    client.force_login(outsider if "fleet" in url else operator)
    response = client.get(url)
    assert response.status_code == 403
    assert words in response.content.decode()


def test_an_outsider_sees_no_fleet_link_and_is_told_who_may_see_a_list(client, outsider):
    client.force_login(outsider)
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("launches:fleet") not in index
    # The start page is not titled after a page this user may not open.
    assert "<h1>Fleet</h1>" not in index and "<title>Fleet" not in index
    refused = client.get(reverse("admin:launches_launch_changelist"))
    assert refused.status_code == 403
    assert "Only viewers and operators may see launches." in refused.content.decode()


def test_a_viewer_sees_the_fleet_link(client, viewer):
    client.force_login(viewer)
    assert reverse("launches:fleet") in client.get(reverse("admin:index")).content.decode()
