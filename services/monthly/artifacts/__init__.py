"""Shipped model artifacts of the monthly service (trained offline, read-only at run time).

``fleet_model.json``: the fleet model's weights and conformal offsets
(:class:`~services.monthly.core.fleet_model.FleetModel`), written by
``wattstream monthly train --data DIR`` (see :mod:`services.monthly.training`); its
``meta`` records the data cut-off, seed and sample counts. A few hundred kB of JSON: the
Lambda image needs no training and no TensorFlow.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final

from services.monthly.core.fleet_model import FleetModel

__all__ = ["FLEET_MODEL", "default_fleet_model"]

FLEET_MODEL: Final = "fleet_model.json"


@functools.lru_cache(maxsize=1)
def default_fleet_model() -> FleetModel:
    """The shipped fleet model, read once per process."""
    text = resources.files(__package__).joinpath(FLEET_MODEL).read_text(encoding="utf-8")
    return FleetModel.from_json(text)
