"""The base APIXX stream: auth, headers and the parsed records of a response."""

from __future__ import annotations

import typing as t
from functools import cached_property
from urllib.parse import quote

from singer_sdk.authenticators import BearerTokenAuthenticator

from tap_apixx import __version__
from tap_apixx.dry_run import stop_after
from tap_apixx.settings import DEFAULT_REQUEST_TIMEOUT
from tap_apixx.transport import TransportStream, response_body

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    import requests
    from singer_sdk.helpers.types import Context


class ApixxStream(TransportStream):
    """Shared plumbing of every APIXX stream; sending, pacing and retries are TransportStream's."""

    sync_last = False  # parallel.py starts these streams after the others
    url_setting = "data_url"  # the setting holding this stream's base URL

    @cached_property
    def authenticator(self) -> BearerTokenAuthenticator:
        return BearerTokenAuthenticator(token=self.config["api_key"])

    @cached_property
    def selected_fields(self) -> frozenset[str]:
        """The properties the catalog selects (all but the deselected ones)."""
        props = self.schema["properties"]
        return frozenset(p for p in props if self.mask.get(("properties", p), True))

    @cached_property
    def user_agent(self) -> str:
        return self.config.get("user_agent") or f"tap-apixx/{__version__}"

    @property
    def http_headers(self) -> dict[str, str]:
        return {"Accept": "application/json"}

    @property
    def url_base(self) -> str:
        return str(self.config.get(self.url_setting, "")).rstrip("/")

    @property
    def timeout(self) -> int:
        return int(self.config.get("request_timeout", DEFAULT_REQUEST_TIMEOUT))

    @property
    def path(self) -> str:  # type: ignore[override]
        return f"/{self.name}"

    def get_by_id(self, object_id: str) -> requests.Response:
        """`GET <base>/<stream>/<id>`, through the same pacer, retries and error policy."""
        url = f"{self.url_base}{self.path}/{quote(object_id, safe='')}"
        prepared = self.build_prepared_request(method="GET", url=url, headers=self.http_headers)
        return self.send(prepared, None)

    def parse_response(self, response: requests.Response) -> Iterable[dict]:
        yield from response_body(response).get("data") or []

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """The records; under `--test`, only as many as the test asks for (see dry_run.py)."""
        records = super().get_records(context)
        limit = self.ABORT_AT_RECORD_COUNT
        return records if limit is None else stop_after(self, records, limit)
