"""What the sealing process runs (`gateway.pipeline.sealing` starts it): claims in, signed envelopes out.

Kept apart, and light: the process is started at the beginning of every run large enough to need it,
so it imports the XML and signature libraries and nothing of the store, the settings or the service
(~0.25 s to start instead of ~1.2 s).

On its input pipe: first ``(key_file, cert_file, password, sender, recipient)``, then one claim at a time,
``(envelope_id, produced_at, items)`` (`gateway.pipeline.dispatch.Claim`), then None to leave. On its
output pipe, for each claim: ``("sealed", envelope_id, body)`` or ``("refused", envelope_id, why)`` (an
event the XSD refuses, a character XML cannot carry: the run seals that envelope itself and finds which
events, `dispatch.seal_next`); ``("crashed", "", traceback)`` if anything else fails; and at the end
``("done", peak_rss_mb, cpu_seconds)``. It writes nothing anywhere, and leaves when the run closes its end
of the pipe or dies.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Iterable
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path

import orjson

from adapters.dude import schema
from adapters.dude.envelope import OutgoingEvent, build_envelope
from adapters.dude.signing import Signer, serialize
from gateway.errors import SchemaViolation
from gateway.gc_tuning import tune_gc
from gateway.procstats import peak_rss_bytes

#: One event of a claim: ``(key, version, operation, xml_body, payload)``, ``payload`` only when
#: ``xml_body`` is None.
Item = tuple[str, int, str, "str | None", "str | None"]


def outgoing(items: Iterable[Item]) -> list[OutgoingEvent]:
    """A claim's items as `build_envelope` takes them: the start tag needs only the key's two halves when
    the rest of the XML is written already, the whole record (decoded from its payload) when not."""
    events = []
    for key, version, operation, body, payload in items:
        if body is None:
            events.append(OutgoingEvent(orjson.loads(payload), version, operation))
        else:
            code_ml, _, id_evenement = key.partition("-")
            events.append(OutgoingEvent({"code_ml": code_ml, "id_evenement": id_evenement}, version, operation,
                                        body))
    return events


def seal_items(items: Iterable[Item], *, envelope_id: str, produced_at: datetime, sender: str, recipient: str,
               signer: Signer) -> bytes:
    """Build, check against the XSD, sign, serialise (what `dispatch.seal_next` does in the run's thread).
    Raises ``ValueError`` or `SchemaViolation` as it would."""
    root = build_envelope(outgoing(items), id_lot=envelope_id, sender=sender, recipient=recipient,
                          produced_at=produced_at)
    schema.validate(root)
    return serialize(signer.sign_in_place(root))


def serve() -> None:
    """The entry point: claims on the pipe named by ``argv[1]``, answers on ``argv[2]``."""
    tune_gc()
    orders = Connection(int(sys.argv[1]), writable=False)
    answers = Connection(int(sys.argv[2]), readable=False)
    started = time.process_time()
    try:
        key_file, cert_file, password, names, sender, recipient = orders.recv()
        # ``names`` (`gateway.keys.key_names`): a key changed since the run checked it is then said by its setting
        signer = Signer.from_files(Path(key_file), Path(cert_file), password=password, names=names)
        while (job := orders.recv()) is not None:
            envelope_id, produced_at, items = job
            try:
                body = seal_items(items, envelope_id=envelope_id, produced_at=produced_at, sender=sender,
                                  recipient=recipient, signer=signer)
            except (ValueError, SchemaViolation) as exc:  # the run finds which events, and says why
                answers.send(("refused", envelope_id, type(exc).__name__))
                continue
            answers.send(("sealed", envelope_id, body))
        answers.send(("done", round((peak_rss_bytes() or 0) / 2**20, 1), round(time.process_time() - started, 3)))
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the run is gone: nobody to seal for
        os._exit(0)
    except BaseException:  # noqa: BLE001  (said to the run, which seals the envelope itself)
        try:
            answers.send(("crashed", "", traceback.format_exc()))
        except OSError:
            pass
