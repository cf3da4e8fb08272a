"""schemathesis against the OpenAPI document the API serves (uvicorn on loopback, admin token): no server
error, and no answer that breaks the document (status, content type, headers, body schema)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from gateway.api.auth import create_client
from gateway.api.main import create_app
from gateway.api.serving import serve_in_thread
from gateway.store.models import utcnow

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The API over a store holding a small night of two missions locales, served on a free port."""
    from adapters.dude.emulator.app import mock_transport
    from adapters.dude.emulator.config import EmulatorConfig
    from adapters.dude.emulator.core import Emulator
    from gateway.context import Gateway
    from gateway.keys import init_dev_keys
    from gateway.pipeline.run import run_batch
    from gateway.settings import Settings
    from tests.factories import write_export, write_registry
    from tests.gateway.api.conftest import PEOPLE, night_lines

    root = tmp_path_factory.mktemp("schemathesis")
    base = Settings(_env_file=None, data_dir=root / "data", report_poll_interval_seconds=0.01,
                    report_wait_seconds=5, retry_backoff_seconds=0.0, retry_backoff_max_seconds=0.0)
    init_dev_keys(base)
    registry = write_registry(root / "registre.csv", [(*PEOPLE[ml], ml) for ml in PEOPLE])
    config = EmulatorConfig.for_settings(base, registry_file=registry, ledger_path=None, report_delay_seconds=0.0)
    with Emulator(config) as emu:
        gw = Gateway.open(base.model_copy(update={"dude_url": "http://dude.test/dude/v1"}),
                          transport=mock_transport(emu), sleep=lambda s: None)
        run_batch(gw, [write_export(root / "P3_00000_20261128.csv", night_lines())])
        _, token = create_client(gw.engine, name="schemathesis", role="admin", now=utcnow())
        with serve_in_thread(create_app(gw)) as url:
            yield url, token
        gw.close()


#: Examples per operation and mode: enough to reach every parameter, few enough to keep the suite fast.
EXAMPLES = 8


def test_the_api_keeps_its_documented_contract(served) -> None:
    """Every operation, with data that fits the document (positive) and data that does not (negative):
    schemathesis' checks must all pass (no 5xx, statuses, content types, headers and bodies as documented,
    invalid data refused)."""
    url, token = served
    auth = {"Authorization": f"Bearer {token}"}
    api = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures, tried = [], 0
    for result in api.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == "POST" and operation.path == "/api/v1/runs":
            continue  # starting runs in a loop: covered by test_operations
        # A cursor is opaque (a position the server gave): any other text is refused, so no generated one.
        fixed = {"query": {"cursor": ""}} if any(p.name == "cursor" for p in operation.query) else {}
        # DUDE's callback takes only a CompteRendu signed by DUDE, which no schema of a string can say nor a
        # generator write: every generated body is refused, a 400 (L03, or DOC_MISMATCH for XML of another root).
        excluded = [positive_data_acceptance] if operation.path == "/api/v1/dude/comptes-rendus" else []
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode, **fixed))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case) -> None:  # called at once, below: the loop's `excluded` is this operation's
                case.call_and_validate(headers=auth, excluded_checks=excluded)  # noqa: B023

            tried += 1
            try:
                check()
            except Unsatisfiable:  # nothing to vary (no parameter, or a raw XML body): nothing to check
                continue
            except (Exception, BaseExceptionGroup) as exc:  # collect them all: one run shows every broken one
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert tried >= 25
    assert not failures, "\n\n".join(failures)
