"""The emulator's routes, thin over the models: the data API, the ops API, and the one
control-plane router (the URL map: each router's prefix and paths are in its module)."""

from __future__ import annotations

from fastapi import APIRouter

from ..models import Store
from . import control, data, ops


def routers(store: Store) -> list[APIRouter]:
    """/api/public/data, /v1 and /_emulator, each bound to the store it serves."""
    return [data.build(store), ops.build(store), control.build(store)]
