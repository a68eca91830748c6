"""Putting a user in a role group gives them the staff flag the admin needs; the group gives the rights."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed
from django.dispatch import receiver

from launches.permissions import ROLE_GROUPS


@receiver(m2m_changed, sender=get_user_model().groups.through)
def role_members_are_staff(sender, instance, action, pk_set, **kwargs) -> None:
    if action != "post_add" or not pk_set or not isinstance(instance, get_user_model()):
        return
    if not instance.is_staff and Group.objects.filter(pk__in=pk_set, name__in=ROLE_GROUPS).exists():
        type(instance).objects.filter(pk=instance.pk).update(is_staff=True)
        instance.is_staff = True
