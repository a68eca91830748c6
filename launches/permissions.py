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


def can_edit_models(user: User) -> bool:
    """Add models and have their config.json read again."""
    return _active_staff(user) and user.has_perm("gpus.change_modelspec")
