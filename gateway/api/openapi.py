"""The OpenAPI document, made to say what the API really answers (a partner's generated client trusts it).

Each operation lists its error statuses with `error_responses`, and for each status the **stable codes** its
problem document may carry (``code``, an ``enum`` per status: ``UNAUTHENTICATED`` for a 401, ``VALIDATION``
or ``INVALID_CURSOR`` for a list's 422…), so a code the API answers is a code the document names; where a
status means something else on one operation (a 403 or a 409 of a submission, the callback's 415), the
operation passes its own `ErrorDoc`. `build` then adds what every operation shares:

* the headers every answer carries (`gateway.api.middleware`): ``X-Request-ID`` and ``Cache-Control: no-store``;
* a 408 (``BODY_TIMEOUT``) on each operation that reads a body, a 500 (``INTERNAL``) on each operation;
* the 405 (``METHOD_NOT_ALLOWED``, with ``Allow``), which belongs to no operation (it answers the methods a
  path does *not* have): a reusable response in ``components.responses``, and in the table of codes;
* French descriptions where FastAPI wrote English ("Successful Response"), or our enums' docstrings did
  (`EventState`, `RejectCode`: each value with its label);
* the table of every code, with its statuses and meaning, at the end of the document's description.

tests/gateway/api/test_contract.py and test_schemathesis.py check the document against the answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.api.middleware import BODY_STALL_SECONDS
from gateway.api.problems import PROBLEM_MEDIA_TYPE, Problem
from gateway.codes import FINAL_EVENT_STATES, EventState, RejectCode

_HEADER_STRING = {"type": "string"}


@dataclass(frozen=True, slots=True)
class ErrorDoc:
    """One error status of an operation: what it means there, the codes its problem may carry, and the
    headers that come with it (name → description)."""

    description: str
    codes: tuple[str, ...]
    headers: Mapping[str, str] = field(default_factory=dict)


#: Each error status as most operations answer it.
DEFAULTS: dict[int, ErrorDoc] = {
    401: ErrorDoc("Jeton absent, inconnu ou révoqué.", ("UNAUTHENTICATED",),
                  {"WWW-Authenticate": 'Le schéma attendu : `Bearer realm="passerelle"`.'}),
    403: ErrorDoc("Rôle insuffisant pour cette opération.", ("FORBIDDEN",)),
    404: ErrorDoc("Introuvable — ou hors du périmètre du client : la réponse est la même.", ("NOT_FOUND",)),
    408: ErrorDoc("Corps de requête interrompu : rien reçu pendant le délai de la passerelle "
                  f"({BODY_STALL_SECONDS:g} s par défaut). La connexion est fermée ; renvoyer la requête.",
                  ("BODY_TIMEOUT",)),
    409: ErrorDoc("Conflit avec l'état actuel : `detail` dit lequel.", ("CONFLICT",)),
    413: ErrorDoc("Corps de requête trop volumineux (refusé avant d'être lu en entier).", ("TOO_LARGE",)),
    415: ErrorDoc("Corps non JSON : l'envoyer avec l'en-tête `Content-Type: application/json`.",
                  ("UNSUPPORTED_MEDIA_TYPE",), {"Accept": "Le type attendu : `application/json`."}),
    422: ErrorDoc("Requête invalide : les champs en cause sont nommés dans `errors`.", ("VALIDATION",)),
    500: ErrorDoc("Erreur interne : le journal de la passerelle la décrit, sous le `request_id` de la réponse.",
                  ("INTERNAL",)),
    503: ErrorDoc("Service indisponible : `detail` dit ce qui manque (base de données, clés, certificats).",
                  ("NOT_READY",)),
}

#: The statuses where one operation's meaning differs from `DEFAULTS`.
SUBMIT_403 = ErrorDoc(
    "Rôle insuffisant (soumettre est réservé à `partner` et `admin`) ; pour une soumission d'un seul événement, "
    "mission locale hors du périmètre du client (en nombre, chaque événement hors périmètre est refusé à part "
    "dans la réponse : `FORBIDDEN`).", ("FORBIDDEN",))
SUBMIT_409 = ErrorDoc("Les mêmes événements enregistrés au même moment par une autre requête : la renvoyer.",
                      ("CONFLICT",))
SUBMIT_ONE_422 = ErrorDoc("Requête invalide (les champs en cause sont nommés dans `errors`), ou événement sans clé "
                          "lisible (`E09`).", ("VALIDATION", "E09"))
SUBMIT_BULK_422 = ErrorDoc("Requête invalide : les champs en cause sont nommés dans `errors`, avec la position de "
                           "l'événement comptée à partir de 0 comme `index` (`events.3.nom` : le champ `nom` du "
                           "quatrième événement). Rien n'est enregistré.", ("VALIDATION",))
PAGED_422 = ErrorDoc("Requête invalide : les champs en cause sont nommés dans `errors` ; `INVALID_CURSOR` : un "
                     "curseur inconnu ou d'une autre recherche, reprendre la recherche depuis le début.",
                     ("VALIDATION", "INVALID_CURSOR"))
RESEND_409 = ErrorDoc("Des événements ont changé d'état pendant le renvoi : recommencer.", ("CONFLICT",))
RUN_409 = ErrorDoc("Une exécution est déjà en cours.", ("RUN_IN_PROGRESS",))
CALLBACK_400 = ErrorDoc(
    "Document refusé : signature (`L01`), certificat (`L02`), XML illisible ou interdit (`L03`), schéma (`L04`), "
    "ou document qui n'est pas un compte rendu (`DOC_MISMATCH`).", ("L01", "L02", "L03", "L04", "DOC_MISMATCH"))
CALLBACK_409 = ErrorDoc("Compte rendu bien signé, mais que la passerelle n'attend pas : lot inconnu, refusé en entier "
                        "ou mis en quarantaine, ou résultat d'un événement absent de ce lot (`DOC_MISMATCH`).",
                        ("DOC_MISMATCH",))
CALLBACK_422 = ErrorDoc("Compte rendu bien signé mais incohérent : les comptes qu'il annonce (`NombreAcceptes`, "
                        "`NombreRejetes`) ne correspondent pas à ses résultats, `detail` dit lesquels "
                        "(`REPORT_INCONSISTENT`). Le DUDE doit le corriger ; rien n'a changé.",
                        ("REPORT_INCONSISTENT",))
CALLBACK_415 = ErrorDoc("Corps non XML : l'envoyer avec l'en-tête `Content-Type: application/xml`.",
                        ("UNSUPPORTED_MEDIA_TYPE",))
METHOD_NOT_ALLOWED = ErrorDoc("Méthode non admise sur cette adresse (sur toute adresse, toute méthode qu'elle ne "
                              "documente pas).", ("METHOD_NOT_ALLOWED",),
                              {"Allow": "Les méthodes admises sur cette adresse."})

#: What each code means, for the table of the description (every code of the document must be here).
MEANINGS = {
    "UNAUTHENTICATED": "jeton absent, inconnu ou révoqué",
    "FORBIDDEN": "rôle insuffisant, ou mission locale hors du périmètre du client",
    "NOT_FOUND": "introuvable, ou hors du périmètre du client ; une adresse terminée par « / » (elles s'écrivent "
                 "sans)",
    "METHOD_NOT_ALLOWED": "méthode non admise sur cette adresse ; l'en-tête `Allow` dit lesquelles le sont",
    "BODY_TIMEOUT": "corps de requête interrompu en cours d'envoi",
    "CONFLICT": "conflit avec une autre requête ou action au même moment : recommencer",
    "RUN_IN_PROGRESS": "une exécution est déjà en cours",
    "DOC_MISMATCH": "rappel du DUDE : document qui n'est pas un compte rendu (400), ou compte rendu qui ne "
                    "correspond à aucun lot attendu (409)",
    "REPORT_INCONSISTENT": "rappel du DUDE : compte rendu dont les comptes annoncés ne correspondent pas à ses "
                           "résultats",
    "TOO_LARGE": "corps de requête trop volumineux",
    "UNSUPPORTED_MEDIA_TYPE": "corps envoyé sous un autre `Content-Type` que celui de l'opération",
    "VALIDATION": "requête invalide : `errors` nomme chaque champ en cause",
    "INVALID_CURSOR": "curseur de page inconnu ou d'une autre recherche",
    "E09": "événement sans clé lisible (`code_ml`, `id_evenement`)",
    "L01": "rappel du DUDE : signature absente ou invalide",
    "L02": "rappel du DUDE : certificat inconnu, pas encore valide ou expiré",
    "L03": "rappel du DUDE : XML illisible ou construction interdite (DTD, entité)",
    "L04": "rappel du DUDE : document non conforme au schéma XSD",
    "INTERNAL": "erreur interne, décrite au journal de la passerelle",
    "NOT_READY": "la passerelle ne peut pas encore servir (base de données, clés, certificats)",
}

#: The headers of every answer (`gateway.api.middleware`).
COMMON_HEADERS = {
    "X-Request-ID": {"required": True, "description": "Identifiant de la requête : celui qu'a envoyé le client s'il "
                     "est bien formé, sinon un tiré par la passerelle (aussi `request_id` d'un problème).",
                     "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}},
    "Cache-Control": {"required": True, "description": "`no-store` : les réponses portent des données "
                      "personnelles, qu'aucun cache ne doit garder.",
                      "schema": {"type": "string", "const": "no-store"}},
}

TAGS = [
    {"name": "événements", "description": "Soumettre, rechercher, lire."},
    {"name": "support", "description": "Renvoyer, clore ; journal d'audit."},
    {"name": "exécutions", "description": "Les lots d'une nuit, ou lancés à la demande."},
    {"name": "lots", "description": "Les enveloppes signées envoyées au DUDE."},
    {"name": "DUDE", "description": "Le rappel par lequel le DUDE livre ses comptes rendus."},
    {"name": "exploitation", "description": "Santé et métriques."},
]

_PROBLEM_REF = "#/components/schemas/Problem"

#: The wire enums, described for the partner: their docstrings (English, for us: "States of an event in the store
#: (brief §5)") were the document's only word on what each state or code means.
_ENUM_TEXTS = {
    "EventState": "État d'une version d'un événement (`state_label` le dit en clair) : "
                  + " ; ".join(f"`{s.value}` : {s.label}" for s in EventState)
                  + ". États finals, qui ne changent plus sans une action (renvoi, clôture, nouvelle "
                    "version) : "
                  + ", ".join(s.value for s in EventState if s in FINAL_EVENT_STATES) + ".",
    "RejectCode": "Code de rejet du catalogue (le `label` du rejet le dit en clair) : `L01`…`L07` rejettent tout "
                  "le lot, `E01`…`E10` un événement. "
                  + " ; ".join(f"`{c.value}` : {c.label}" for c in RejectCode) + ".",
}


def _response(doc: ErrorDoc) -> dict[str, Any]:
    schema = {"allOf": [{"$ref": _PROBLEM_REF}, {"properties": {"code": {"enum": list(doc.codes)}}}]}
    response: dict[str, Any] = {"description": doc.description, "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}}}
    if doc.headers:
        response["headers"] = {name: {"description": text, "schema": _HEADER_STRING}
                               for name, text in doc.headers.items()}
    return response


def error_responses(*statuses: int, special: Mapping[int, ErrorDoc] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for an operation: each status with its `ErrorDoc` (``special``'s, else `DEFAULTS`'),
    the `Problem` model and its codes."""
    special = special or {}
    return {status: _response(special.get(status) or DEFAULTS[status]) for status in statuses}


def build(app: FastAPI, *, max_events: int) -> dict[str, Any]:
    """The document of ``app``'s routes, finished as the module docstring says."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                         tags=TAGS)
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    if bulk := schemas.get("EventBulkIn"):
        bulk["properties"]["events"]["maxItems"] = max_events
    for name, text in _ENUM_TEXTS.items():
        if name in schemas:
            schemas[name]["description"] = text
    components["responses"] = {"MethodNotAllowed": _response(METHOD_NOT_ALLOWED)}

    for operations in schema["paths"].values():
        for operation in operations.values():
            responses = operation["responses"]
            if "requestBody" in operation:
                responses.setdefault("408", _response(DEFAULTS[408]))
            responses.setdefault("500", _response(DEFAULTS[500]))
            for response in responses.values():
                if response.get("description") in ("Successful Response", ""):
                    response["description"] = "Succès."
                response.setdefault("headers", {}).update(COMMON_HEADERS)
    schema["info"]["description"] = f"{app.description}\n{_code_table(schema)}"
    return schema


def _code_table(schema: dict[str, Any]) -> str:
    """Every code the document's answers may carry, with its statuses: the one list a partner looks codes up in."""
    statuses: dict[str, set[int]] = {}
    responses = [r for operations in schema["paths"].values() for op in operations.values()
                 for r in op["responses"].items()] + [("405", schema["components"]["responses"]["MethodNotAllowed"])]
    for status, response in responses:
        content = response.get("content", {}).get(PROBLEM_MEDIA_TYPE)
        if content:
            for code in content["schema"]["allOf"][1]["properties"]["code"]["enum"]:
                statuses.setdefault(code, set()).add(int(status))
    order = [*(code for code in MEANINGS if code in statuses), *sorted(set(statuses) - set(MEANINGS))]
    rows = [f"| `{code}` | {', '.join(str(s) for s in sorted(statuses[code]))} | {MEANINGS.get(code, '')} |"
            for code in order]
    return ("\n**Codes d'erreur** (`code` du problème ; les codes de rejet `E01`…`E10`, `L01`…`L07` d'un événement "
            "sont dans son `reject.code`) :\n\n| code | statut HTTP | sens |\n|---|---|---|\n" + "\n".join(rows) + "\n")

