"""JSON for the project's own columns (baselines, audit trail, history) that keeps NaN and
infinity.

JSON has no NaN, and PostgreSQL's json type refuses the `NaN` token Python's `json` writes, so a
baseline with an undefined number (R² of a one-row segment) could not be stored there. A
non-finite float is written as `{"$float": "nan"}` (or "inf", "-inf") and read back as the float;
a tag object, not a bare string, so a category that happens to be called "NaN" stays a string,
and data keys that start like the tag are escaped, so no data reads as a tag.
"""

from __future__ import annotations

import json
import math
from typing import Any

_TAG = "$float"


def _escaped(key: Any) -> Any:
    """A data key that starts like the tag gets one more "$", so no data dict reads as a tag."""
    return f"{key}$" if isinstance(key, str) and key.startswith(_TAG) else key


def _tagged(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {_TAG: repr(value)}  # 'nan', 'inf', '-inf'
    if isinstance(value, dict):
        return {_escaped(k): _tagged(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tagged(v) for v in value]
    return value


def _untag(obj: dict[str, Any]) -> Any:
    if obj.keys() == {_TAG}:
        return float(obj[_TAG])
    return {k[:-1] if k.startswith(_TAG) else k: v for k, v in obj.items()}


def dumps(value: Any) -> str:
    """Strict JSON text: every non-finite float tagged, never a bare NaN token."""
    return json.dumps(_tagged(value), allow_nan=False)


def loads(text: str | bytes) -> Any:
    return json.loads(text, object_hook=_untag)
