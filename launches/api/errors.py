"""Every API error is JSON with a ``detail`` a person can act on (the admin's own sentences).

Field errors keep their per-field lists under ``errors`` and are also joined into ``detail``.
"""

from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from launches.models import LaunchRefused


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def _sentences(errors) -> list[str]:
    if isinstance(errors, dict):
        return [
            text if name in {"non_field_errors", "__all__"} else f"{name}: {text}"
            for name, value in errors.items()
            for text in _sentences(value)
        ]
    if isinstance(errors, list):
        return [text for value in errors for text in _sentences(value)]
    return [str(errors)]


def exception_handler(exc, context) -> Response | None:
    if isinstance(exc, LaunchRefused):
        exc = Conflict(str(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if not (isinstance(data, dict) and set(data) == {"detail"}):
        response.data = {"detail": " ".join(_sentences(data)), "errors": data}
    return response
