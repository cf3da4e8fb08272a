"""Fixtures for the DUDE emulator's tests: throwaway keys, a small registry, an emulator, factories.

Keys are made once per session (``init_dev_keys`` in a temporary data folder): RSA generation is the
slow part. Every test gets a fresh emulator with an in-memory ledger, reports available at once, a
fixed "today" and a clock it can move.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from adapters.dude.emulator import Emulator, EmulatorAnswer, EmulatorConfig
from adapters.dude.emulator.config import PARIS
from adapters.dude.emulator.registry import Registry
from adapters.dude.envelope import OutgoingEvent, build_envelope
from adapters.dude.messages import Receipt, Report, open_signed, parse_receipt, parse_report
from adapters.dude.signing import Signer, TrustStore
from gateway.keys import DevKeys, init_dev_keys
from gateway.settings import Settings

#: "Today" for rule E04 in every test: event dates are written relative to it.
TODAY = date(2025, 6, 15)

REGISTRY_CSV = (
    "identifiant_pe;nom;prenom;date_naissance;code_ml;date_debut_cotraitance;date_fin_cotraitance\n"
    "1000001A;DUPONT;Zoé;06/05/2004;12345;01/01/2024;\n"          # the default jobseeker
    "1000002B;Lefèvre-D'Hôte;Jean-Éric;15/03/2003;12345;01/09/2023;\n"  # accents, hyphens, apostrophe
    "1000003C;MARTIN;Paul;01/02/2005;54321;01/01/2024;\n"          # delegated to another ML
    "1000004D;BERNARD;Léa;10/10/2004;12345;01/01/2023;31/12/2024\n"  # delegation ended
    "1000005E;PETIT;Hugo;20/03/2010;12345;01/01/2025;\n"           # 15 years old in 2025
)


class FakeClock:
    """A timezone-aware clock that only moves when told (close to the real now: certificates)."""

    def __init__(self) -> None:
        self.now = datetime.now(PARIS).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> DevKeys:
    return init_dev_keys(Settings(data_dir=tmp_path_factory.mktemp("keys")))


@pytest.fixture(scope="session")
def gateway_signer(keys: DevKeys) -> Signer:
    return Signer.from_files(keys.gateway.key_file, keys.gateway.cert_file)


@pytest.fixture(scope="session")
def gateway_trust(keys: DevKeys) -> TrustStore:
    """What the gateway trusts: DUDE's certificate (to check receipts and reports)."""
    return TrustStore.from_dir(keys.gateway.trust_dir)


@pytest.fixture(scope="session")
def today() -> date:
    return TODAY


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The test registry, loaded directly (for the pure rule tests)."""
    return Registry.from_text(REGISTRY_CSV)


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "registre-dude.csv"
    path.write_text(REGISTRY_CSV, encoding="utf-8")
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(keys: DevKeys, registry_file: Path, clock: FakeClock) -> EmulatorConfig:
    return EmulatorConfig(
        key_file=keys.emulator.key_file, cert_file=keys.emulator.cert_file, trust_dir=keys.emulator.trust_dir,
        registry_file=registry_file, ledger_path=None, report_delay_seconds=0, today=TODAY, clock=clock,
    )


@pytest.fixture
def emulator(config: EmulatorConfig) -> Iterator[Emulator]:
    with Emulator(config) as emu:
        yield emu


@pytest.fixture
def make_emulator(config: EmulatorConfig) -> Iterator[Callable[..., Emulator]]:
    """``make_emulator(max_events=3, http_client=…)``: an emulator whose config differs from the default."""
    made: list[Emulator] = []

    def make(*, http_client: httpx.Client | None = None, **changes: Any) -> Emulator:
        made.append(Emulator(config.replace(**changes), http_client=http_client))
        return made[-1]

    yield make
    for emu in made:
        emu.close()


_counter = iter(range(1, 10**9))


@pytest.fixture
def make_event() -> Callable[..., OutgoingEvent]:
    """``make_event(type_evenement="PEM", siret=…, version=2, operation="M")``: an event for 1000001A
    (valid unless told otherwise), each call a new ``id_evenement`` unless one is given."""

    def make(*, version: int = 1, operation: str = "C", **fields: Any) -> OutgoingEvent:
        record: dict[str, Any] = {
            "code_ml": "12345", "id_evenement": str(next(_counter)), "identifiant_pe": "1000001A",
            "nom": "Dupont", "prenom": "Zoé", "date_naissance": "2004-05-06", "conseiller": "CONS01",
            "type_evenement": "ENT", "date_evenement": "2025-05-20", "modalite": "IND",
            "premier_entretien": True,
        }
        record.update(fields)
        return OutgoingEvent(record={k: v for k, v in record.items() if v is not None},
                             version=version, operation=operation)

    return make


@pytest.fixture
def make_lot(gateway_signer: Signer) -> Callable[..., bytes]:
    """``make_lot(events, id_lot=…, sender=…, before_signing=fn, signer=…)``: a signed envelope's bytes.

    ``before_signing(root)`` changes the built envelope before it is signed (a wrong header count, an
    XSD violation), so the emulator sees a correctly signed but faulty document.
    """

    def make(events: list[OutgoingEvent], *, id_lot: str | None = None, sender: str = "PARCOURS3",
             before_signing: Callable[[etree._Element], None] | None = None,
             signer: Signer | None = None) -> bytes:
        root = build_envelope(events, id_lot=id_lot or str(uuid.uuid4()), sender=sender, recipient="DUDE",
                              produced_at=datetime.now(PARIS))
        if before_signing is not None:
            before_signing(root)
        return (signer or gateway_signer).sign_to_bytes(root)

    return make


@pytest.fixture
def read_receipt(gateway_trust: TrustStore) -> Callable[[EmulatorAnswer], Receipt]:
    """The receipt of a 200 answer, checked as the gateway checks it (signature by DUDE, then XSD)."""

    def read(answer: EmulatorAnswer) -> Receipt:
        assert answer.status_code == 200, answer.body[:300]
        assert answer.content_type == "application/xml"
        verified = open_signed(answer.body, trust=gateway_trust, expected="AccuseReception")
        return parse_receipt(verified.root)

    return read


@pytest.fixture
def fetch_report(emulator: Emulator, gateway_trust: TrustStore) -> Callable[..., Report]:
    """``fetch_report(id_lot)``: poll the emulator and read the signed report as the gateway does."""

    def fetch(id_lot: str, *, from_emulator: Emulator | None = None) -> Report:
        answer = (from_emulator or emulator).report(id_lot)
        assert answer.status_code == 200, answer.body[:300]
        return parse_report(open_signed(answer.body, trust=gateway_trust, expected="CompteRendu").root)

    return fetch


@pytest.fixture
def send(emulator: Emulator, make_lot: Callable[..., bytes], read_receipt: Callable[[EmulatorAnswer], Receipt],
         fetch_report: Callable[..., Report]) -> Callable[..., Report]:
    """``send([events…])``: one envelope posted, its receipt checked RECU, its report returned."""

    def run(events: list[OutgoingEvent], **lot_options: Any) -> Report:
        id_lot = lot_options.pop("id_lot", None) or str(uuid.uuid4())
        receipt = read_receipt(emulator.receive(make_lot(events, id_lot=id_lot, **lot_options)))
        assert receipt.status == "RECU", (receipt.reject_code, receipt.reject_message)
        assert receipt.events_received == len(events)
        return fetch_report(id_lot)

    return run
