"""``POST /api/v1/dude/comptes-rendus``: DUDE pushes its reports here (brief §4: "pushed to the gateway's
callback URL and can also be fetched by polling").

No bearer token: DUDE is not an API client. What is trusted is the document itself, checked by
`gateway.pipeline.reconcile.apply_report` exactly as a polled report is: hardened parsing (``L03``),
a signature by a certificate of the trust store valid now (``L01``/``L02``), the XSD (``L04``), and
every result naming an event of the envelope it claims (``DOC_MISMATCH``). Anything else is refused
with a problem carrying that code, and nothing changes. A report already applied is answered 200
("already applied"), so DUDE stops pushing it; polling stays the fallback for reports never pushed.
A body not labelled XML is refused first (415, `gateway.api.deps.require_xml`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from gateway.api import schemas
from gateway.api.deps import GatewayDep, require_xml
from gateway.api.problems import error_responses
from gateway.pipeline.reconcile import ReportOutcome, apply_report

CALLBACK_PATH = "/api/v1/dude/comptes-rendus"

router = APIRouter(prefix="/dude", tags=["DUDE"])

_EXAMPLE = ('<?xml version="1.0" encoding="UTF-8"?>\n<CompteRendu xmlns="urn:fr:spe:dude:echanges:v1">'
            '<IdLot>…</IdLot>…<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">…</ds:Signature>'
            '</CompteRendu>')


@router.post("/comptes-rendus", response_model=schemas.ReportAck, summary="Compte rendu du DUDE (rappel)",
             openapi_extra={"security": [], "requestBody": {"required": True, "content": {
                 "application/xml": {"schema": {"type": "string"}, "example": _EXAMPLE}}}},
             responses=error_responses(400, 409, 413, 415), dependencies=[Depends(require_xml)])
async def receive_report(request: Request, gw: GatewayDep) -> schemas.ReportAck:
    """Un `CompteRendu` signé par le DUDE, tel quel (XML). 200 : appliqué, ou déjà appliqué ; 400 : refusé
    (L01 signature, L02 certificat, L03 XML, L04 schéma) ; 409 : bien signé mais pour un lot inconnu ou
    nommant un événement absent de ce lot (DOC_MISMATCH). Un refus ne change rien."""
    data = await request.body()
    applied = await run_in_threadpool(apply_report, gw, data, via="callback")
    if applied.outcome is ReportOutcome.DUPLICATE:
        return schemas.ReportAck(envelope_id=applied.envelope_id, outcome="DUPLICATE", accepted=0, rejected=0,
                                 message="compte rendu déjà appliqué : rien de changé")
    return schemas.ReportAck(envelope_id=applied.envelope_id, outcome="APPLIED", accepted=applied.accepted,
                             rejected=applied.rejected, message="compte rendu appliqué")
