"""The SDK's standard tap tests (singer_sdk.testing), run over real HTTP against the emulator."""

from __future__ import annotations

import pytest
from singer_sdk.testing import get_tap_test_class

from apixx_emulator.testing import DEFAULT_KEY
from tap_apixx.tap import TapApixx

# The emulator's URL is known only once the session fixture has started it, so the test class
# gets this dict now and the fixture below points it at the emulator before the first sync.
CONFIG: dict = {"api_key": DEFAULT_KEY, "data_url": "http://127.0.0.1:9/unset", "page_size": 100}


@pytest.fixture(scope="module", autouse=True)
def _point_config_at_emulator(emulator) -> None:
    CONFIG.update(data_url=emulator.data_url, api_url=emulator.api_url)


TestTapApixx = get_tap_test_class(TapApixx, config=CONFIG)
