"""The retention purge (brief §5: "the raw signed envelopes, receipts and reports are kept for audit (a
retention period purges them and the personal fields of closed events)"; issue 5).

After ``retention_days``:

* **documents** — the signed envelopes as sent, receipts and reports as received — of envelopes that
  are settled (``TRAITE``, ``REJETE``, ``SANS_REPONSE``) are deleted; an envelope still waiting for its
  receipt or report keeps its documents (the envelope is resent from its stored bytes). The envelope's
  history records the purge.
* **personal fields** of settled events — ``identifiant_pe``, ``nom``, ``prenom``, ``date_naissance``,
  ``num_dossier``, ``commentaire`` — are blanked (in the stored payload and the ``identifiant_pe``
  column), and ``erased_at`` says when. "Settled" is a decision the brief leaves open: ``CLOS`` (closed by
  support), ``ACCEPTE`` (DUDE has it; our copy is only the audit trail) and ``CORRIGE`` (a newer version
  supersedes it). Not ``REJETE``, ``INVALIDE`` or ``SANS_REPONSE``: they still await a person, and a
  resend needs their fields; they are purged once someone closes them, or a new version supersedes them.

* **the audit log's filters**: a resend by filter may have named a jobseeker (``identifiant_pe``); in
  entries past the period that criterion is blanked, while who did what, when, and how many stay.

Keys, versions, types, codes, states, dates, content hashes (so that an old export read again is still
recognised as already sent) and every history row stay. Time is the last change of the row
(``updated_at``) for events, the document's own time for documents.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from gateway import lease
from gateway.codes import EnvelopeState, EventState
from gateway.context import Gateway
from gateway.store.models import audit_t, documents_t, envelope_history_t, envelopes_t, events_t

log = logging.getLogger("gateway.purge")

PERSONAL_FIELDS = ("identifiant_pe", "nom", "prenom", "date_naissance", "num_dossier", "commentaire")
ERASABLE_STATES = (EventState.CLOS.value, EventState.ACCEPTE.value, EventState.CORRIGE.value)
SETTLED_ENVELOPES = (EnvelopeState.TRAITE.value, EnvelopeState.REJETE.value, EnvelopeState.SANS_REPONSE.value)
PURGE_LEASE = "purge"
BATCH = 1000


@dataclass(frozen=True, slots=True)
class PurgeResult:
    cutoff: datetime
    documents: int
    envelopes: int
    events: int

    def as_dict(self) -> dict:
        return {"cutoff": self.cutoff.isoformat(), "documents": self.documents, "envelopes": self.envelopes,
                "events": self.events}


def purge(gw: Gateway, *, now: datetime | None = None) -> PurgeResult:
    """Purge what is older than ``retention_days`` (by ``now``, default the gateway's clock)."""
    now = now or gw.clock()
    cutoff = now - timedelta(days=gw.settings.retention_days)
    documents, envelopes = _purge_documents(gw, cutoff, now)
    events = _erase_personal_fields(gw, cutoff, now)
    _erase_audited_jobseekers(gw, cutoff)
    result = PurgeResult(cutoff, documents, envelopes, events)
    log.info("purge before %s: %d documents of %d envelopes, personal fields of %d events",
             cutoff.isoformat(), documents, envelopes, events)
    return result


def _purge_documents(gw: Gateway, cutoff: datetime, now: datetime) -> tuple[int, int]:
    d, e = documents_t.c, envelopes_t.c
    old = (sa.select(d.envelope_id).distinct().join(envelopes_t, e.id == d.envelope_id)
           .where(d.at < cutoff, e.state.in_(SETTLED_ENVELOPES)))
    documents = envelopes = 0
    while True:
        with gw.engine.begin() as conn:
            ids = list(conn.execute(old.limit(BATCH)).scalars())
            if not ids:
                return documents, envelopes
            documents += conn.execute(documents_t.delete().where(d.envelope_id.in_(ids), d.at < cutoff)).rowcount
            states = dict(conn.execute(sa.select(e.id, e.state).where(e.id.in_(ids))).all())
            conn.execute(envelope_history_t.insert(), [
                {"envelope_id": i, "state": states[i], "at": now,
                 "cause": f"documents purgés (rétention de {gw.settings.retention_days} jours)"} for i in ids])
            envelopes += len(ids)


def _erase_personal_fields(gw: Gateway, cutoff: datetime, now: datetime) -> int:
    c = events_t.c
    due = (sa.select(c.id, c.payload).where(c.state.in_(ERASABLE_STATES), c.updated_at < cutoff, c.erased_at.is_(None))
           .order_by(c.id).limit(BATCH))
    erased = 0
    while True:
        with gw.engine.begin() as conn:
            rows = conn.execute(due).all()
            if not rows:
                return erased
            changes = []
            for event_id, payload in rows:
                record = json.loads(payload)
                for name in PERSONAL_FIELDS:
                    if name in record:
                        record[name] = None
                changes.append({"b_id": event_id, "b_payload": json.dumps(record, ensure_ascii=False)})
            conn.execute(events_t.update().where(c.id == sa.bindparam("b_id")).values(
                payload=sa.bindparam("b_payload"), identifiant_pe=None, erased_at=now), changes)
            erased += len(rows)


def _erase_audited_jobseekers(gw: Gateway, cutoff: datetime) -> int:
    a = audit_t.c
    with gw.engine.begin() as conn:
        rows = conn.execute(sa.select(a.id, a.filter).where(
            a.at < cutoff, a.filter.is_not(None), a.filter.contains('"identifiant_pe"'))).all()
        changes = []
        for entry_id, text in rows:
            flt = json.loads(text)
            if flt.get("identifiant_pe"):
                flt["identifiant_pe"] = "(effacé)"
                changes.append({"b_id": entry_id, "b_filter": json.dumps(flt, ensure_ascii=False)})
        if changes:
            conn.execute(audit_t.update().where(a.id == sa.bindparam("b_id")).values(filter=sa.bindparam("b_filter")),
                         changes)
    return len(changes)


def purge_with_lease(gw: Gateway) -> dict:
    """The scheduled purge: one instance at a time (the others find the lease held and skip)."""
    held = lease.acquire(gw.engine, PURGE_LEASE, gw.instance_id, seconds=max(gw.settings.lease_seconds, 3600))
    if held is None:
        return {"skipped": "purge en cours sur une autre instance"}
    try:
        return purge(gw).as_dict()
    finally:
        lease.release(gw.engine, PURGE_LEASE, gw.instance_id)
