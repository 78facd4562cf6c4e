"""Typed tap errors whose text is one clear, secret-free line meant for the operator."""

from __future__ import annotations

from singer_sdk.exceptions import FatalAPIError


class TapApixxError(Exception):
    """Base of every error the CLI prints as one `tap-apixx: error: ...` line."""


class ApiRequestError(FatalAPIError, TapApixxError):
    """The API refused a request for good (4xx) or kept failing after all retries."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id


class TieGroupTooLargeError(TapApixxError):
    """More records share one updated_at than the API's largest page can hold."""


class OutOfOrderError(TapApixxError):
    """The API returned records not ascending by updated_at; continuing could lose records."""


class BoundaryCheckError(TapApixxError):
    """The API's answer at a page boundary shows that records could have been skipped."""


class PagingStalledError(TapApixxError):
    """The API says more records remain but paging cannot get past an instant."""


class InputError(TapApixxError):
    """A config, state or catalog the tap cannot use; the message names the file and stream."""


class PagingStuckError(TapApixxError):
    """A list's paging does not move forward (a repeated page or id, a cursor cycle)."""
