"""Parsing XML that comes from outside, safely (brief §6).

Every document the gateway or the emulator receives goes through `parse`: entities are not
resolved, DTDs are neither loaded nor allowed, the network is never touched, and the document's
size and depth are bounded. Anything else is refused with ``L03`` (`HostileXmlError`), before any
signature or schema check, so that a hostile document costs little.

See https://lxml.de/FAQ.html#how-do-i-use-lxml-safely-as-a-web-service-endpoint
"""

from __future__ import annotations

from lxml import etree

from gateway.errors import HostileXmlError

#: Default size limit (bytes) for one document; a setting can lower or raise it per caller.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class _NothingOutside(etree.Resolver):
    """Answers every external DTD and entity with nothing, so that libxml2 never opens a file.

    ``load_dtd=False``, ``resolve_entities=False`` and ``no_network=True`` are not enough: libxml2 (2.14,
    under lxml 6.1) still opened a *local* external DTD (``<!DOCTYPE a SYSTEM "/etc/shadow">``) or a
    parameter entity naming a file, before the DOCTYPE could be refused. Anyone may post to DUDE's
    callback: its answers told which files existed (a different message, naming the file), and a named
    pipe held a worker for good. lxml asks a parser's resolvers before its default loader.
    """

    def resolve(self, system_url, public_id, context):
        return self.resolve_string("", context)


def hardened_parser() -> etree.XMLParser:
    """A new parser with entities, DTDs, network and every external resource off (also handed to signxml,
    which parses again).

    A new parser per call: lxml parsers are not thread-safe and the emulator serves concurrently.
    """
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
        huge_tree=False, remove_blank_text=False, collect_ids=False,
    )
    parser.resolvers.add(_NothingOutside())
    return parser


def parse(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "document") -> etree._Element:
    """Parse untrusted bytes into an element, or raise `HostileXmlError` (``L03``).

    Refused: more than ``max_bytes``; not well-formed; any DOCTYPE (internal or external DTD, hence
    any entity declaration: entities are never expanded, so a "billion laughs" costs nothing before
    it is refused); nesting deeper than libxml2's limit of 256 levels (``huge_tree`` stays off,
    which also caps the size of one text node at 10 MB).
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("parse() takes bytes, as received on the wire")
    if len(data) > max_bytes:
        raise HostileXmlError(f"{what} too large: {len(data)} bytes, at most {max_bytes}")
    try:
        root = etree.fromstring(bytes(data), parser=hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise HostileXmlError(f"{what} is not well-formed XML: {exc}") from exc
    if root is None:
        raise HostileXmlError(f"{what} is empty")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise HostileXmlError(f"{what} carries a DTD (DOCTYPE), which is forbidden")
    return root
