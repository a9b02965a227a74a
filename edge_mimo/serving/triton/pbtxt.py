"""Triton's ``config.pbtxt`` (protobuf text format) written from plain Python values, without protobuf."""

from __future__ import annotations

import json


class Enum(str):
    """An enum value written bare (``TYPE_FP32``, ``KIND_CPU``), not quoted."""


def _value(v, indent: str) -> str:
    if isinstance(v, dict):
        inner = "".join(_field(k, x, indent + "  ") for k, x in v.items())
        return "{\n" + inner + indent + "}"
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)  # quoted, escaped; non-ASCII kept as UTF-8 (text format reads it)


def _field(key: str, v, indent: str) -> str:
    if isinstance(v, list):
        if v and all(isinstance(x, dict) for x in v):
            return "".join(f"{indent}{key} {_value(x, indent)}\n" for x in v)
        return f"{indent}{key}: [ {', '.join(_value(x, indent) for x in v)} ]\n"
    sep = " " if isinstance(v, dict) else ": "
    return f"{indent}{key}{sep}{_value(v, indent)}\n"


def to_pbtxt(config: dict) -> str:
    """A model config as text: dicts are messages, lists of dicts repeated messages, other lists repeated scalars."""
    return "".join(_field(k, v, "") for k, v in config.items())


def string_parameters(params: dict[str, object]) -> list[dict]:
    """Config ``parameters`` entries (Triton keeps every value as a string)."""
    return [{"key": k, "value": {"string_value": v if isinstance(v, str) else json.dumps(v)}}
            for k, v in params.items()]
