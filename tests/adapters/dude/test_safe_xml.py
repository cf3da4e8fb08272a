"""Hostile XML is refused with L03 before anything else looks at it (brief §6)."""

from __future__ import annotations

import pytest

from adapters.dude import safe_xml
from gateway.errors import HostileXmlError

HOSTILE = {
    "entite-interne": b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
    "xxe-fichier": b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
    "dtd-externe": b'<?xml version="1.0"?><!DOCTYPE a SYSTEM "http://example.invalid/a.dtd"><a/>',
    "milliard-de-rires": (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY l "lol">'
                          + b"".join(b'<!ENTITY l%d "%s">' % (i, (b"&l%d;" % (i - 1) if i > 1 else b"&l;") * 10)
                                     for i in range(1, 10))
                          + b']><l>&l9;</l>'),
    "imbrication-profonde": b"<a>" * 5000 + b"</a>" * 5000,
    "mal-forme": b"<LotEvenements><EnTete></LotEvenements>",
    "vide": b"",
    "utf8-invalide": b'<?xml version="1.0" encoding="UTF-8"?><a>\xff\xfe</a>',
}


@pytest.mark.parametrize("data", HOSTILE.values(), ids=HOSTILE.keys())
def test_refused_with_l03(data: bytes) -> None:
    with pytest.raises(HostileXmlError) as caught:
        safe_xml.parse(data)
    assert caught.value.code == "L03"


def test_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(HostileXmlError, match="too large"):
        safe_xml.parse(b"<a>" + b"x" * 2000 + b"</a>", max_bytes=1000)


def test_ordinary_document_is_read() -> None:
    assert safe_xml.parse("<a>é</a>".encode()).text == "é"
