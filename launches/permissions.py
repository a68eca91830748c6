"""The one place that decides what a user may see and do; the admin and our views both ask it."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

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


def can_edit_models(user: User) -> bool:
    """Add models and have their config.json read again."""
    return _active_staff(user) and user.has_perm("gpus.change_modelspec")
