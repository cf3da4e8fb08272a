"""The collector's thresholds the gateway's processes run with (`gateway.gc_tuning`, issue 7)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from gateway.gc_tuning import FIRST_GENERATION


@pytest.fixture
def default_thresholds():
    """CPython's defaults while the test runs, and whatever the test process had afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_every_gateway_command_collects_the_young_generation_less_often(default_thresholds, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.store.db import create_schema, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'gateway.db'}")
    create_schema(engine)  # a store to list
    engine.dispose()
    result = CliRunner().invoke(app, ["envelopes", "list", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert gc.get_threshold() == (FIRST_GENERATION, 10, 10)

