"""DRF's side of launches/permissions.py: the same questions, asked for each API request.

Reading needs the Viewers' rights, acting (launch, stop, test YaRN, re-detect) the Operators'; adding,
changing and deleting configs and adding models ask the same rights as the admin. History has no write
endpoints.
An anonymous request gets 401 (the token authenticator names its scheme), a user without the role 403.
"""

from __future__ import annotations

from collections.abc import Callable

from rest_framework.permissions import SAFE_METHODS, BasePermission

from launches.permissions import (
    ADD_MODELS_ONLY,
    ADMIN_ONLY,
    DELETE_CONFIGS_ONLY,
    EDIT_CONFIGS_ONLY,
    NO_ROLE,
    OPERATORS_ONLY,
    READ_ONLY_RECORDS,
    can_add_configs,
    can_add_models,
    can_delete_configs,
    can_edit_configs,
    can_operate,
    can_view,
)

# What each unsafe viewset action asks, and the sentence given when the answer is no.
ACTION_RULES: dict[str, tuple[Callable, str]] = {
    "launch": (can_operate, OPERATORS_ONLY),
    "test_yarn": (can_operate, OPERATORS_ONLY),
    "redetect": (can_operate, OPERATORS_ONLY),
    "stop": (can_operate, OPERATORS_ONLY),
    "read_config": (can_add_models, ADD_MODELS_ONLY),
}
CREATE_RULES: dict[str, tuple[Callable, str]] = {
    "configs": (can_add_configs, EDIT_CONFIGS_ONLY),
    "models": (can_add_models, ADD_MODELS_ONLY),
}

# Endpoints of records only the site writes: a write there is answered with READ_ONLY_RECORDS; any
# other write without a rule above with ADMIN_ONLY.
RECORDS = {"launches", "limits", "gpu-profiles"}


class ReadForViewersActForOperators(BasePermission):
    """Viewers read; each write asks the rule of its action (ACTION_RULES, CREATE_RULES)."""

    message = NO_ROLE

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not can_view(user):
            self.message = NO_ROLE
            return False
        if request.method in SAFE_METHODS:
            return True
        action = getattr(view, "action", None)
        rule = ACTION_RULES.get(action)
        if action == "create":
            rule = CREATE_RULES.get(getattr(view, "basename", ""))
        elif action in {"update", "partial_update"}:
            rule = (can_edit_configs, EDIT_CONFIGS_ONLY) if view.basename == "configs" else None
        elif action == "destroy":
            rule = (can_delete_configs, DELETE_CONFIGS_ONLY) if view.basename == "configs" else None
        if rule is None:
            self.message = READ_ONLY_RECORDS if view.basename in RECORDS else ADMIN_ONLY
            return False
        check, self.message = rule
        return check(user)
