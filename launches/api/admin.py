"""API tokens in the admin: every user with a role sees their own token and can renew it.

Superusers see every user's token row (the key only of their own) and may create tokens for others,
as DRF's token admin allows; everyone else sees only their own row.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import Token, TokenProxy

from launches.permissions import NO_ROLE, can_view

admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class ApiTokenAdmin(TokenAdmin):
    list_display = ("user", "key_if_yours", "created")

    @admin.display(description="key")
    def key_if_yours(self, obj: Token) -> str:
        request_user = getattr(self, "_request_user", None)
        return obj.key if request_user is not None and obj.user_id == request_user.pk else "(hidden)"

    def get_queryset(self, request: HttpRequest):
        self._request_user = request.user
        queryset = super().get_queryset(request).select_related("user")
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_view(request.user)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return can_view(request.user) and (
            obj is None or request.user.is_superuser or obj.user_id == request.user.pk
        )

    def get_urls(self):
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        renew = self.admin_site.admin_view(self.renew_view)
        return [path("renew/", renew, name=f"{info}_renew"), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra = {**(extra_context or {}), "can_renew": can_view(request.user)}
        return super().changelist_view(request, extra)

    def renew_view(self, request: HttpRequest):
        """Replace the user's own token with a new one (the old one stops working at once)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not can_view(request.user):
            raise PermissionDenied(NO_ROLE)
        with transaction.atomic():
            Token.objects.filter(user=request.user).delete()
            Token.objects.create(user=request.user)
        messages.success(request, "Your API token was renewed; the old one no longer works.")
        return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))
