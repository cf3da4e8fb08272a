"""XSD validation against the published v1 schema (``schemas/xsd/``), fast path and error paths.

Every document is checked with lxml (libxml2), which takes ~0.05 s for 20,000 events. Only when a
document fails is it checked again with xmlschema, which is ~60 times slower but names every error
with a precise path, so each error can be tied to the ``Evenement`` it falls in (brief §9). The
two validators implement the same XSD 1.0 schema; ``xmllint --schema`` is the third, foreign judge
the tests call.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

from adapters.dude.events_xml import NS
from gateway.errors import SchemaErrorDetail, SchemaViolation

if TYPE_CHECKING:
    import xmlschema

#: Where the published XSDs live (brief §7: ``schemas/xsd/`` at the top of the repository). Not a
#: setting: the sealing process imports this module, and `gateway.settings` alone costs it ~0.15 s.
XSD_DIR = Path(__file__).resolve().parents[2] / "schemas" / "xsd"
SCHEMA_FILE = XSD_DIR / "dude-echanges-v1.xsd"
_EVENT_TAG = f"{{{NS}}}Evenement"


@lru_cache(maxsize=4)
def lxml_schema(path: Path = SCHEMA_FILE) -> etree.XMLSchema:
    """The compiled schema (once per process: compiling costs more than validating a small document)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(path), parser))


@lru_cache(maxsize=4)
def _xmlschema(path: Path = SCHEMA_FILE) -> xmlschema.XMLSchema10:
    """Imported here, on a first invalid document: importing xmlschema costs every process that seals or
    checks envelopes (the run, DUDE's emulator, each API worker) ~12 MB and ~0.2 s of start-up that a
    valid night never needs."""
    import xmlschema

    return xmlschema.XMLSchema10(str(path))


def validate(root: etree._Element, *, path: Path = SCHEMA_FILE) -> None:
    """Raise `SchemaViolation` (``L04``) with per-event details if ``root`` is not valid."""
    schema = lxml_schema(path)
    if schema.validate(root):
        return
    first = schema.error_log.last_error
    details = explain(root, path=path)
    summary = details[0].message if details else (first.message if first else "invalid")
    raise SchemaViolation(f"document not valid against {path.name}: {summary}", errors=details)


def is_valid(root: etree._Element, *, path: Path = SCHEMA_FILE) -> bool:
    return lxml_schema(path).validate(root)


def explain(root: etree._Element, *, path: Path = SCHEMA_FILE) -> tuple[SchemaErrorDetail, ...]:
    """Every violation with its path and, where it falls inside an ``Evenement``, that event's id.

    Slow (xmlschema): only called on a document that lxml already found invalid.
    """
    details = []
    for error in _xmlschema(path).iter_errors(root):
        elem = error.elem
        event_id = None
        probe = elem if isinstance(elem, etree._Element) else None
        while probe is not None:
            if probe.tag == _EVENT_TAG:
                event_id = probe.get("id")
                break
            probe = probe.getparent()
        where = error.path or ""
        details.append(SchemaErrorDetail(
            path=where, message=error.reason or str(error.message), event_id=event_id,
            line=getattr(elem, "sourceline", None),
        ))
    if not details:  # the two validators disagree: keep lxml's word, without a path
        for entry in lxml_schema(path).error_log:
            details.append(SchemaErrorDetail(path=entry.path or "", message=entry.message, line=entry.line))
    return tuple(details)
