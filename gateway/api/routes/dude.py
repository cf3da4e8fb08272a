"""``POST /api/v1/dude/comptes-rendus``: DUDE pushes its reports here (brief §4: "pushed to the gateway's
callback URL and can also be fetched by polling").

No bearer token: DUDE is not an API client. What is trusted is the document itself, checked by
`gateway.pipeline.reconcile.apply_report` exactly as a polled report is: hardened parsing (``L03``),
a signature by a certificate of the trust store valid now (``L01``/``L02``), the XSD (``L04``), and
every result naming an event of the envelope it claims (``DOC_MISMATCH``), counts that agree with its
results (``REPORT_INCONSISTENT``). Anything else is refused with a problem carrying that code, and nothing
changes. A report already applied is answered 200 ("already applied"), so DUDE stops pushing it; polling
stays the fallback for reports never pushed. A body not labelled XML is refused first (415,
`gateway.api.deps.require_xml`).

What a refusal says is French, as everywhere in the API, and names nothing of the document but its shape
(the root element found, where the first schema error is; never a value, which may name someone): the
reconciliation's own account (English, technical, logged with its code by `apply_report`) stays in the
gateway's log. A document that is not a ``CompteRendu`` at all is a 400 (the request is wrong); a genuine
report that nothing here awaits is a 409; both ``DOC_MISMATCH``. A genuine report that contradicts itself (its
counts are not its results' own) is a 422 ``REPORT_INCONSISTENT``: the fault is in the document, not in our
state, and its detail names both counts, which name nobody.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from lxml import etree
from starlette.concurrency import run_in_threadpool

from adapters.dude import safe_xml
from adapters.dude.events_xml import NS
from gateway.api import schemas
from gateway.api.deps import GatewayDep, require_xml
from gateway.api.openapi import CALLBACK_400, CALLBACK_409, CALLBACK_415, CALLBACK_422, error_responses
from gateway.api.problems import WrongDocument
from gateway.context import Gateway
from gateway.errors import DocumentRejected, ReportInconsistent, SchemaViolation, UnexpectedDocument
from gateway.pipeline.reconcile import AppliedReport, ReportOutcome, apply_report

CALLBACK_PATH = "/api/v1/dude/comptes-rendus"

router = APIRouter(prefix="/dude", tags=["DUDE"])

_EXAMPLE = ('<?xml version="1.0" encoding="UTF-8"?>\n<CompteRendu xmlns="urn:fr:spe:dude:echanges:v1">'
            '<IdLot>…</IdLot>…<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">…</ds:Signature>'
            '</CompteRendu>')


@router.post("/comptes-rendus", response_model=schemas.ReportAck, summary="Compte rendu du DUDE (rappel)",
             openapi_extra={"security": [], "requestBody": {"required": True, "content": {
                 "application/xml": {"schema": {"type": "string"}, "example": _EXAMPLE}}}},
             responses=error_responses(400, 409, 413, 415, 422, special={
                 400: CALLBACK_400, 409: CALLBACK_409, 415: CALLBACK_415, 422: CALLBACK_422}),
             dependencies=[Depends(require_xml)])
async def receive_report(request: Request, gw: GatewayDep) -> schemas.ReportAck:
    """Un `CompteRendu` signé par le DUDE, tel quel (XML). 200 : appliqué, ou déjà appliqué ; 400 : refusé
    (L01 signature, L02 certificat, L03 XML, L04 schéma ; DOC_MISMATCH : pas un compte rendu) ; 409 : bien signé
    mais pour un lot inconnu ou nommant un événement absent de ce lot (DOC_MISMATCH) ; 422 : bien signé mais dont
    les comptes annoncés ne correspondent pas aux résultats (REPORT_INCONSISTENT). Un refus ne change rien."""
    data = await request.body()
    applied = await run_in_threadpool(_apply, gw, data)
    if applied.outcome is ReportOutcome.DUPLICATE:
        return schemas.ReportAck(envelope_id=applied.envelope_id, outcome="DUPLICATE", accepted=0, rejected=0,
                                 message="compte rendu déjà appliqué : rien de changé")
    return schemas.ReportAck(envelope_id=applied.envelope_id, outcome="APPLIED", accepted=applied.accepted,
                             rejected=applied.rejected, message="compte rendu appliqué")


#: What a refused report is told, by code.
_REFUSED = {
    "L01": "compte rendu refusé : signature absente ou invalide (document modifié après sa signature, ou signé "
           "d'une autre clé)",
    "L02": "compte rendu refusé : certificat du signataire inconnu de la passerelle, pas encore valide ou expiré",
    "L03": "compte rendu refusé : XML illisible, trop volumineux ou construction interdite (DTD, entité)",
    "L04": "compte rendu refusé : non conforme au schéma XSD des échanges",
}
_NOT_AWAITED = ("compte rendu bien signé, mais que la passerelle n'attend pas : lot qu'elle n'a pas envoyé, refusé en "
                "entier ou mis en quarantaine, ou résultat d'un événement absent de ce lot ; rien n'a changé (le "
                "détail est au journal de la passerelle)")


def _apply(gw: Gateway, data: bytes) -> AppliedReport:
    """`apply_report`, its refusals told in French (`_REFUSED`), with the same codes."""
    try:
        return apply_report(gw, data, via="callback")
    except DocumentRejected as exc:
        said = _REFUSED.get(exc.code, f"compte rendu refusé ({exc.code})")
        if isinstance(exc, SchemaViolation) and exc.errors:  # where, never what: a value may name someone
            said += f" ; premier écart à {exc.errors[0].path}"
        raise DocumentRejected(said, code=exc.code) from exc
    except ReportInconsistent as exc:  # before its parent: said with its counts (numbers only, nobody named)
        (accepted, rejected), (found_accepted, found_rejected) = exc.announced, exc.found
        raise ReportInconsistent(f"compte rendu incohérent : comptes annoncés {accepted} acceptés / {rejected} "
                                 f"rejetés, résultats {found_accepted} / {found_rejected} ; rien n'a changé",
                                 announced=exc.announced, found=exc.found) from exc
    except UnexpectedDocument as exc:
        root = safe_xml.parse(data, max_bytes=gw.settings.max_document_bytes)  # read once already: it parses
        if root.tag != f"{{{NS}}}CompteRendu":
            found = etree.QName(root)
            # The sender's own names, from a document not yet trusted: said, but cut (a namespace has no length limit)
            namespace, name = _cut(found.namespace), _cut(found.localname)
            space = "" if found.namespace == NS else (f" de l'espace de noms {namespace}" if found.namespace
                                                      else " sans espace de noms")
            raise WrongDocument(f"document refusé : un CompteRendu de l'espace de noms {NS} est attendu ici, reçu "
                                f"« {name} »{space}") from exc
        raise UnexpectedDocument(_NOT_AWAITED) from exc


def _cut(text: str | None, limit: int = 100) -> str:
    return text if not text or len(text) <= limit else text[:limit] + "…"
