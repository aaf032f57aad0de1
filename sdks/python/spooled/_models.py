"""Glue between keyword arguments / dicts and the generated attrs models."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, TypeVar

from ._generated.types import Response
from .errors import SpooledError, ValidationError

M = TypeVar("M")


def jsonable(value: Any) -> Any:
    """Plain JSON values: datetimes become RFC 3339 strings (naive ones are read as UTC, as the server
    does); nested containers are walked."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def merge(
    params: Mapping[str, Any] | None, fields: Mapping[str, Any], *, drop_none: bool = False
) -> dict[str, Any]:
    """One request dict from a positional dict and keyword arguments (keywords win). With ``drop_none``,
    keywords left at None mean "not given" and never override the dict."""
    data = dict(params or {})
    data.update({k: v for k, v in fields.items() if not (drop_none and v is None)})
    return jsonable(data)  # type: ignore[no-any-return]


def body(
    model: Any, params: Mapping[str, Any] | None, fields: Mapping[str, Any], *, drop_none: bool = True
) -> Any:
    """A generated request model built from a dict and/or keywords. Unknown keys are kept and sent.

    A missing required field or a value of the wrong type is reported before anything is sent."""
    data = merge(params, fields, drop_none=drop_none)
    try:
        return model.from_dict(data)
    except KeyError as exc:
        field = exc.args[0] if exc.args else "?"
        raise ValidationError(
            f"{field}: is required", details=[{"field": field, "code": "missing_field"}]
        ) from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValidationError(f"invalid {model.__name__}: {exc}", details=[{"code": "invalid_type"}]) from exc


def one(response: Response[Any], cls: type[M]) -> M:
    parsed = response.parsed
    if not isinstance(parsed, cls):
        raise SpooledError(
            f"unexpected response for {cls.__name__}: HTTP {int(response.status_code)}",
            status_code=int(response.status_code),
            code="UNEXPECTED_RESPONSE",
        )
    return parsed


def many(response: Response[Any], cls: type[M]) -> list[M]:
    parsed = response.parsed
    if not isinstance(parsed, list) or not all(isinstance(item, cls) for item in parsed):
        raise SpooledError(
            f"unexpected response for list[{cls.__name__}]: HTTP {int(response.status_code)}",
            status_code=int(response.status_code),
            code="UNEXPECTED_RESPONSE",
        )
    return parsed


def has_more(response: Response[Any], page: list[Any], limit: int) -> bool:
    """Whether another page may exist: ``X-Has-More`` when the route sends it, else a full page."""
    header = response.headers.get("x-has-more")
    if header is not None:
        return header.strip().lower() == "true"
    return len(page) >= limit
