"""Hostile XML is refused with L03 before anything else looks at it (brief §6)."""

from __future__ import annotations

import os
import threading

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


LOCAL_FILE_FORMS = {
    # libxml2 opened these even with load_dtd, resolve_entities and the network off (lxml 6.1, libxml2 2.14).
    "dtd-externe-locale": b'<?xml version="1.0"?>\n<!DOCTYPE a SYSTEM "%s">\n<a/>',
    "entite-parametre-locale": b'<!DOCTYPE a [<!ENTITY %% p SYSTEM "%s"> %%p;]><a/>',
}


def _refusal(data: bytes) -> str:
    with pytest.raises(HostileXmlError) as caught:
        safe_xml.parse(data)
    assert caught.value.code == "L03"
    return caught.value.message


@pytest.mark.parametrize("form", LOCAL_FILE_FORMS.values(), ids=LOCAL_FILE_FORMS.keys())
def test_a_doctype_naming_a_local_file_never_opens_it(form: bytes, tmp_path) -> None:
    """Anyone may post to DUDE's callback: a DOCTYPE naming a file made the gateway open it, told whether it
    existed (a different message, naming it), and hung a worker for good on a named pipe."""
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET\n")
    existing = _refusal(form % str(secret).encode())
    missing = _refusal(form % str(tmp_path / "absent.txt").encode())
    assert existing == missing and "secret" not in existing and "DOCTYPE" in existing

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)  # opening it to read waits for a writer: a parse that opens it never returns
    answers: list[str] = []
    reader = threading.Thread(target=lambda: answers.append(_refusal(form % str(pipe).encode())), daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # release it before failing, so that the test run goes on
        with open(pipe, "wb"):
            pass
        pytest.fail("the parser opened the named pipe")
    assert answers == [existing]
