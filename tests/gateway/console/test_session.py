"""The console's signed session cookie: what it carries, and everything that makes it refused
(`gateway.console.session`; issue 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.console.session import SessionCodec, SessionData, load_secret
from gateway.errors import ConfigurationError
from gateway.settings import Settings

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def codec(clock) -> SessionCodec:
    return SessionCodec(b"k" * 64, max_age_seconds=8 * 3600, clock=clock)


def test_a_session_round_trips_and_names_no_secret(codec) -> None:
    data = SessionData(7, codec.fingerprint("ab" * 32), codec.new_csrf())
    value = codec.dumps(data)
    assert codec.loads(value) == data
    assert "ab" * 32 not in value and data.fingerprint != "ab" * 32


def test_a_session_expires_on_the_gateways_clock(codec, clock) -> None:
    value = codec.dumps(SessionData(7, "f", "x"))
    clock.now = T0 + timedelta(hours=7, minutes=59)
    assert codec.loads(value) is not None
    clock.now = T0 + timedelta(hours=8, seconds=1)
    assert codec.loads(value) is None


def test_forged_tampered_or_foreign_cookies_are_refused(codec, clock) -> None:
    value = codec.dumps(SessionData(7, "f", "x"))
    payload, stamp, signature = value.split(".")
    assert codec.loads(f"{payload[:-1]}A.{stamp}.{signature}") is None
    assert codec.loads(f"{payload}.{stamp}.{signature[:-2]}xx") is None
    assert SessionCodec(b"z" * 64, max_age_seconds=3600, clock=clock).loads(value) is None  # another key
    assert codec.loads(codec.signin_dumps("x")) is None  # the sign-in cookie is not a session
    assert codec.signin_csrf(value) is None  # nor the other way round
    assert codec.loads("") is None and codec.loads("a" * 5000) is None


def test_the_fingerprint_changes_with_the_token(codec) -> None:
    assert codec.fingerprint("a" * 64) != codec.fingerprint("b" * 64)
    assert codec.fingerprint("a" * 64) == codec.fingerprint("a" * 64)


def test_the_key_comes_from_the_setting_or_is_generated_once(tmp_path) -> None:
    chosen = Settings(_env_file=None, data_dir=tmp_path, console_secret_key="s" * 40)
    assert load_secret(chosen) == b"s" * 40 and not chosen.console_secret_file.exists()
    generated = Settings(_env_file=None, data_dir=tmp_path / "d")
    first = load_secret(generated)
    assert len(first) == 64 and load_secret(generated) == first
    assert (generated.console_secret_file.stat().st_mode & 0o777) == 0o600


def test_short_keys_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError):
        Settings(_env_file=None, data_dir=tmp_path, console_secret_key="court")
    settings = Settings(_env_file=None, data_dir=tmp_path)
    settings.console_secret_file.write_text("court\n")
    with pytest.raises(ConfigurationError):
        load_secret(settings)
