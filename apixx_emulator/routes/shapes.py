"""The API's answers as OpenAPI models: what /openapi.json documents (the handlers build plain
dicts and serialise them with orjson; these only describe them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class Page(BaseModel):
    entity: str
    count: int
    next_cursor: str | None
    data: list[dict[str, Any]]


class ConnectorError(BaseModel):
    code: str
    message: str


class Connector(BaseModel):
    id: str
    name: str
    system: str
    status: str
    last_verified_at: str | None
    last_error: ConnectorError | None


class Flow(BaseModel):
    id: str
    name: str
    status: str
    source: str
    destination: str
    schedule: str
    last_run_at: str | None
    created_at: str
    updated_at: str


class FlowConnectors(BaseModel):
    source: Connector
    destination: Connector


class ScheduleDetail(BaseModel):
    interval_seconds: int
    timezone: str
    next_run_at: str | None


class FlowDetail(Flow):
    connectors: FlowConnectors
    schedule_detail: ScheduleDetail


class RunOut(BaseModel):
    id: str
    flow_id: str
    status: str
    trigger: str
    retry_of: str | None
    started_at: str
    finished_at: str | None
    duration_ms: int | None
    records_processed: int
    records_failed: int


class RunError(BaseModel):
    code: str
    message: str
    record_ref: str | None


class RunDetail(RunOut):
    errors: list[RunError]


class Meta(BaseModel):
    total: int
    has_more: bool


class FlowList(BaseModel):
    data: list[Flow]
    meta: Meta


class RunList(BaseModel):
    data: list[RunOut]
    meta: Meta


class ConnectorList(BaseModel):
    data: list[Connector]
    meta: Meta


class RunCreated(BaseModel):
    run_id: str


class VerifyResult(BaseModel):
    status: str
    error: ConnectorError | None = None


class RotatedKey(BaseModel):
    id: str
    secret: str
    rotated_at: str
