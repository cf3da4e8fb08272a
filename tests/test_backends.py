"""Without a PostgreSQL server the PostgreSQL variants skip, saying why; with GATEWAY_TEST_REQUIRE_POSTGRES=1
(CI) they fail instead, so that CI can never skip them silently."""

from __future__ import annotations

import pytest

from tests.backends import POSTGRES_URL_VAR, REQUIRE_VAR, postgres_url


def test_no_server_means_skipped_with_the_reason(monkeypatch) -> None:
    monkeypatch.delenv(POSTGRES_URL_VAR, raising=False)
    monkeypatch.delenv(REQUIRE_VAR, raising=False)
    with pytest.raises(pytest.skip.Exception, match=POSTGRES_URL_VAR):
        postgres_url()


def test_no_server_when_required_means_failed(monkeypatch) -> None:
    monkeypatch.delenv(POSTGRES_URL_VAR, raising=False)
    monkeypatch.setenv(REQUIRE_VAR, "1")
    with pytest.raises(pytest.fail.Exception, match=REQUIRE_VAR):
        postgres_url()
