"""Pre- and post-processing for the SageMaker TensorFlow Serving container.

Shipped as ``code/inference.py`` in ``model.tar.gz`` (next to ``code/metadata.json``, the
bundle's ModelSpec); the container calls :func:`input_handler` before TF Serving and
:func:`output_handler` after it. Plain Python on purpose: the serving container offers no
numpy guarantee, and a few thousand multiplications per request need none.

Request (``application/json``), raw unscaled values in kW, V, A, Wh and the calendar
features, oldest row first, columns in ``metadata.json``'s ``features`` order:

* ``{"windows": [window, ...]}``: each window exactly ``input_steps`` rows;
* ``{"rows": [row, ...]}``: one household's latest feature rows (at least
  ``input_steps``; the last ``input_steps`` are used); a row is a list in feature order
  or an object keyed by feature name;
* ``{"instances": [...]}``: already-scaled TF Serving input, passed through.

Response (``application/json``)::

    {"model_version": "...", "resolution_s": 900, "quantiles": [0.1, 0.5, 0.9],
     "predictions": [[[q0.1, q0.5, q0.9] for each step] for each window]}   # kW
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

CONTENT_TYPE = "application/json"


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    """The ModelSpec of the served model (``WATTSTREAM_METADATA`` overrides the path)."""
    default = Path(__file__).resolve().with_name("metadata.json")
    path = Path(os.environ.get("WATTSTREAM_METADATA", str(default)))
    return dict(json.loads(path.read_text()))


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return float(value)


def _row(row: Any, features: list[str]) -> list[float]:
    if isinstance(row, dict):
        missing = [name for name in features if name not in row]
        if missing:
            raise ValueError(f"row lacks features {missing}")
        return [_number(row[name]) for name in features]
    if not isinstance(row, list) or len(row) != len(features):
        raise ValueError(f"a row needs {len(features)} values in order {features}")
    return [_number(v) for v in row]


def windows_from_request(body: Any, model: dict[str, Any]) -> list[list[list[float]]]:
    """Raw windows ``[window][step][feature]`` from a ``windows`` or ``rows`` request."""
    features, steps = list(model["features"]), int(model["input_steps"])
    if not isinstance(body, dict):
        raise ValueError("the request must be a JSON object")
    if "windows" in body:
        windows = body["windows"]
        if not isinstance(windows, list) or not windows:
            raise ValueError("windows must be a non-empty list")
    elif "rows" in body:
        rows = body["rows"]
        if not isinstance(rows, list) or len(rows) < steps:
            raise ValueError(f"rows must hold at least {steps} rows")
        windows = [rows[-steps:]]
    else:
        raise ValueError('expected "windows", "rows" or "instances"')
    result = []
    for window in windows:
        if not isinstance(window, list) or len(window) != steps:
            raise ValueError(f"every window needs exactly {steps} rows")
        result.append([_row(row, features) for row in window])
    return result


def scale(windows: list[list[list[float]]], model: dict[str, Any]) -> list[list[list[float]]]:
    mean, std = model["feature_mean"], model["feature_std"]
    return [
        [[(v - m) / s for v, m, s in zip(row, mean, std, strict=True)] for row in window]
        for window in windows
    ]


def unscale(predictions: list[Any], model: dict[str, Any]) -> list[Any]:
    """Scaled target (``[window][step][quantile]``) -> kW."""
    i = list(model["features"]).index(model["target"])
    m, s = model["feature_mean"][i], model["feature_std"][i]
    return [[[v * s + m for v in step] for step in window] for window in predictions]


def input_handler(data: Any, context: Any) -> str:
    """Request stream -> TF Serving ``{"instances": ...}`` JSON."""
    content_type = (getattr(context, "request_content_type", None) or CONTENT_TYPE).split(";")[0]
    if content_type.strip() != CONTENT_TYPE:
        raise ValueError(f"unsupported content type {content_type!r}: send {CONTENT_TYPE}")
    raw = data.read()
    body = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    if isinstance(body, dict) and "instances" in body:
        return json.dumps({"instances": body["instances"]})
    model = spec()
    return json.dumps({"instances": scale(windows_from_request(body, model), model)})


def output_handler(data: Any, context: Any) -> tuple[str, str]:
    """TF Serving response -> our forecast JSON in kW."""
    if data.status_code != 200:
        raise ValueError(data.content.decode("utf-8"))
    model = spec()
    predictions = json.loads(data.content)["predictions"]
    body = {
        "model_version": model["version"],
        "resolution_s": model["resolution_s"],
        "quantiles": model["quantiles"],
        "predictions": unscale(predictions, model),
    }
    return json.dumps(body), CONTENT_TYPE
