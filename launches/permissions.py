"""The one place that decides what a user may see and do; the admin and our views both ask it."""

from __future__ import annotations

from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.http import HttpRequest
from django.urls import Resolver404, resolve

from launches.admin_mixins import NoEditing

OPERATORS = "Operators"
VIEWERS = "Viewers"
ROLE_GROUPS = (OPERATORS, VIEWERS)

User = AbstractBaseUser | AnonymousUser


def _active_staff(user: User) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def can_view(user: User) -> bool:
    return _active_staff(user) and user.has_perm("launches.view_launch")


def can_operate(user: User) -> bool:
    """Launch, stop, test YaRN, re-detect."""
    return _active_staff(user) and user.has_perm("launches.operate_launch")


def can_edit_configs(user: User) -> bool:
    return _active_staff(user) and user.has_perm("launches.change_launchconfig")


def can_delete_configs(user: User) -> bool:
    """Delete a launch config; its launches and recorded changes stay in the history."""
    return _active_staff(user) and user.has_perm("launches.delete_launchconfig")


def can_add_models(user: User) -> bool:
    """Add a model by repo id or folder (its config.json is then read)."""
    return _active_staff(user) and user.has_perm("gpus.add_modelspec")


def can_add_configs(user: User) -> bool:
    return _active_staff(user) and user.has_perm("launches.add_launchconfig")


# Sentences shown when a check fails, the same in the admin, our pages and the API.
NO_ROLE = "You have no role that may see launches; ask an administrator."
OPERATORS_ONLY = "Only operators may launch, stop, test YaRN or re-detect limits."
EDIT_CONFIGS_ONLY = "Only operators may add or change launch configs."
ADD_MODELS_ONLY = "Only operators may add models."
DELETE_CONFIGS_ONLY = "Only operators may delete launch configs."
READ_ONLY_RECORDS = "Nobody edits this through the API: history and learned limits are read-only."
ADMIN_ONLY = "The API does not change this; administrators do it in the admin."


def can_edit_models(user: User) -> bool:
    """Add models and have their config.json read again."""
    return _active_staff(user) and user.has_perm("gpus.change_modelspec")


def allowed_pages(request: HttpRequest) -> dict[str, bool]:
    """Template context: ``may_view`` (the fleet and live pages), so no page links to what answers 403."""
    return {"may_view": can_view(getattr(request, "user", AnonymousUser()))}


# What each admin page's verb asks (Django's permission codenames) and how a refusal says it.
_ADMIN_VERBS = {"changelist": "view", "change": "view", "history": "view", "add": "add", "delete": "delete"}
_SAID = {"view": "see", "add": "add", "delete": "delete"}


def refusal(request: HttpRequest, exception: Exception | None = None) -> str:
    """The sentence a 403 page shows: the message the view refused with, else what the admin page at
    ``request.path_info`` refused and who may do it, from the permissions the roles hold (e.g. "Only
    operators may delete launch configs."); "" when neither is known."""
    said = str(exception or "")
    if said:
        return said
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return ""
    app_label, _, rest = (match.url_name or "").partition("_")
    model_name, _, verb = rest.partition("_")
    if match.namespace != "admin" or verb not in _ADMIN_VERBS:
        return ""
    try:
        model = apps.get_model(app_label, model_name)
    except LookupError:
        return ""
    action = _ADMIN_VERBS[verb]
    plural = model._meta.verbose_name_plural
    read_only = admin.site.is_registered(model) and isinstance(admin.site.get_model_admin(model), NoEditing)
    if action != "view" and read_only:
        return f"Nobody may {_SAID[action]} {plural}: they are records the site keeps as they are."
    roles = list(
        Group.objects.filter(
            name__in=ROLE_GROUPS,
            permissions__codename=f"{action}_{model_name}",
            permissions__content_type__app_label=app_label,
        )
        .order_by("-name")
        .values_list("name", flat=True)
    )
    who = " and ".join(role.lower() for role in roles) or "administrators"
    return f"Only {who} may {_SAID[action]} {plural}."
