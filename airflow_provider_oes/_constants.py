"""Names and addresses every layer needs, each written once.

Pure data with no imports, so that DAG files (through the sensor and operator), the providers manager
(through ``get_provider_info``) and the pytest plugin can read them without loading the hook.
"""

from __future__ import annotations

DEFAULT_CONN_ID = "oes_default"
"""The connection id used when a task names none; published as ``OESHook.default_conn_name``."""

PRODUCTION_BASE_URL = "https://app.bitgo.com"
"""BitGo's production API: the base URL of a connection with an empty Host."""
TEST_BASE_URL = "https://app.bitgo-test.com"
"""BitGo's test environment."""

DEFAULT_LIST_PAGE_SIZE = 100
"""Records per list request unless a caller asks otherwise (the operator's default, read without the hook)."""
