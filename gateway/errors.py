"""The gateway's one error tree. Every error carries a stable, machine-readable code.

Where the brief defines a reject code (§4: ``L01``…``L07``, ``E01``…``E10``) that code is the error's
code, so the same string is stored on the event row, shown in the console, returned by the API and
asserted by the tests. Other errors carry a stable upper-case code of their own.

Each class also inherits the standard exception a caller would naturally catch (``ValueError``,
``LookupError``, ``OSError``…), as signxml does, so callers may catch whichever they think in.
Errors raised by lxml, xmlschema, signxml, SQLAlchemy or httpx are translated where those libraries
are called (``raise … from exc``): nothing above the adapters catches a foreign exception type.

::

    GatewayError                         code
    ├── ConfigurationError               CONFIG            (ValueError)
    ├── KeyMaterialError                 KEYS              (ValueError)
    ├── ExportFileError                  P3_FILE           (ValueError)  a whole export refused
    ├── RecordRejected                   E01…E10           (ValueError)  one record refused
    ├── DocumentRejected                 L01…L07           (ValueError)  one XML document refused
    │   ├── HostileXmlError              L03
    │   ├── SchemaViolation              L04  (.errors: per-event paths)
    │   ├── SignatureInvalid             L01
    │   ├── EnvelopeRefused              L0x  DUDE's own verdict, when it could not even answer a receipt
    │   └── CertificateRejected          L02
    ├── UnexpectedDocument               DOC_MISMATCH      (ValueError)  valid, but not the one awaited
    │   └── ReportInconsistent           REPORT_INCONSISTENT  a report whose counts disagree with its own results
    ├── TransportError                   DUDE_UNREACHABLE  (OSError)     worth retrying
    │   └── RemoteServerError            DUDE_SERVER_ERROR
    │       └── AccessRefused            DUDE_ACCESS_REFUSED  HTTP 401/403: the gateway itself refused
    ├── SendingPaused                    SENDING_PAUSED
    ├── StoreError                       STORE             (RuntimeError)
    │   └── StoreMissing                 STORE_MISSING     a command that looks or undoes, pointed where no store is
    ├── NotFound                         NOT_FOUND         (LookupError)
    │   └── NoReport                     NO_REPORT         DUDE knows no report for an envelope
    ├── Unauthenticated                  UNAUTHENTICATED   (PermissionError)  API: no, unknown or revoked token
    ├── PermissionDenied                 FORBIDDEN         (PermissionError)
    ├── Conflict                         CONFLICT          (RuntimeError)
    │   ├── RunInProgress                RUN_IN_PROGRESS   a run is already going on (another holds the lease)
    │   ├── NightServed                  NIGHT_SERVED      gateway run --now: this night is served already
    │   └── LeaseLost                    LEASE_LOST        a run's lease went to another instance mid-run
    ├── RequestRejected                  VALIDATION        (ValueError)  API: a request it cannot take (.errors)
    │   ├── PayloadTooLarge              TOO_LARGE         body over the size limit, refused before it is read
    │   └── InvalidCursor                INVALID_CURSOR    a page cursor that is not one of ours
    ├── MethodNotAllowed                 METHOD_NOT_ALLOWED
    └── NotReady                         NOT_READY         the API cannot serve yet (database, keys)
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from gateway.codes import RejectCode


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""

    code: str = "GATEWAY"

    def __init__(self, message: str, *, code: str | RejectCode | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = str(code)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class ConfigurationError(GatewayError, ValueError):
    code = "CONFIG"


class KeyMaterialError(GatewayError, ValueError):
    """A key or certificate cannot be read, does not match, or is unsafe to use."""

    code = "KEYS"


class ExportFileError(GatewayError, ValueError):
    """A whole Parcours 3 export is refused (unreadable, a required column missing, not CSV)."""

    code = "P3_FILE"

    def __init__(self, message: str, *, path: str, code: str | None = None):
        super().__init__(f"{path}: {message}", code=code)
        self.path = path
        self.detail = message

    def __reduce__(self):  # keyword arguments: the default pickling would lose them (the reader process)
        return (partial(ExportFileError, path=self.path, code=self.code), (self.detail,))


class RecordRejected(GatewayError, ValueError):
    """One record fails pre-flight: it carries an event-level reject code and the field at fault."""

    def __init__(self, code: RejectCode, message: str, *, field: str | None = None):
        super().__init__(message, code=code)
        self.reject = code
        self.field = field


class DocumentRejected(GatewayError, ValueError):
    """A whole XML document (envelope, receipt, report) is refused with an envelope-level code."""

    code = "L03"

    def __init__(self, message: str, *, code: RejectCode | str | None = None):
        super().__init__(message, code=code)

    @property
    def reject(self) -> RejectCode:
        return RejectCode(self.code)


class HostileXmlError(DocumentRejected):
    """Not well-formed, or a forbidden construct (DTD, entity, too large, too deep)."""

    code = "L03"


@dataclass(frozen=True, slots=True)
class SchemaErrorDetail:
    """One XSD violation: where it is (XPath-like), which event it falls in (if any), and why."""

    path: str
    message: str
    event_id: str | None = None
    line: int | None = None


class SchemaViolation(DocumentRejected):
    code = "L04"

    def __init__(self, message: str, *, errors: Sequence[SchemaErrorDetail] = ()):
        super().__init__(message)
        self.errors = tuple(errors)


class SignatureInvalid(DocumentRejected):
    code = "L01"


class CertificateRejected(DocumentRejected):
    code = "L02"


class EnvelopeRefused(DocumentRejected):
    """DUDE refused an envelope outright (HTTP 400 with a code), without a receipt to read."""


class UnexpectedDocument(GatewayError, ValueError):
    """A valid, well-signed document that does not answer what was asked (another envelope, a replay)."""

    code = "DOC_MISMATCH"


class ReportInconsistent(UnexpectedDocument):
    """A well-signed report whose ``NombreAcceptes``/``NombreRejetes`` disagree with its own results.

    Not a mismatch with our state, as its parent's other cases are (the callback answers it 422, not 409:
    DUDE's side must look at what it produced), but refused alike, whole, changing nothing: a subclass so that
    whoever refuses an `UnexpectedDocument` (report polling among them) refuses this one too.
    ``announced`` and ``found``: (accepted, rejected) as the report says them, and as its results count them.
    """

    code = "REPORT_INCONSISTENT"

    def __init__(self, message: str, *, announced: tuple[int, int], found: tuple[int, int]):
        super().__init__(message)
        self.announced = announced
        self.found = found


class TransportError(GatewayError, OSError):
    """DUDE could not be reached or did not answer in time: the envelope is sent again later."""

    code = "DUDE_UNREACHABLE"


class RemoteServerError(TransportError):
    """DUDE answered, with an error or an answer we did not expect. ``status_code`` tells "this request broke
    it" (500: counted against the envelope, `gateway.pipeline.quarantine`) from "it is unavailable" (502, 503,
    504) and from the rest (DUDE there, the envelope kept to go again)."""

    code = "DUDE_SERVER_ERROR"

    def __init__(self, message: str, *, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class AccessRefused(RemoteServerError):
    """DUDE, or what stands before it, refused the gateway itself (HTTP 401 or 403): its address is not, or no
    longer, allowed, or a proxy wants credentials. No envelope is at fault, and posting again
    changes nothing until someone mends the access: a sending pass stops posting at the first
    (`gateway.pipeline.dispatch.transmit`), where it used to post every envelope ``send_attempts`` times."""

    code = "DUDE_ACCESS_REFUSED"


class SendingPaused(GatewayError):
    """An operator paused all sending; nothing leaves until it is resumed."""

    code = "SENDING_PAUSED"


class StoreError(GatewayError, RuntimeError):
    code = "STORE"


class StoreMissing(StoreError):
    """No SQLite store where a command that only looks or undoes was pointed (a mistyped ``--data-dir``): said,
    rather than answered from an empty store made on the spot (`gateway.cli.common.open_store`)."""

    code = "STORE_MISSING"


class NotFound(GatewayError, LookupError):
    code = "NOT_FOUND"


class NoReport(NotFound):
    code = "NO_REPORT"


class PermissionDenied(GatewayError, PermissionError):
    code = "FORBIDDEN"


class Conflict(GatewayError, RuntimeError):
    code = "CONFLICT"


class Unauthenticated(GatewayError, PermissionError):
    """No bearer token, or one the store does not know or has revoked (brief §6)."""

    code = "UNAUTHENTICATED"


class RunInProgress(Conflict):
    code = "RUN_IN_PROGRESS"


class NightServed(Conflict):
    """``gateway run --now`` found the night already served: nothing is running, so not `RunInProgress`."""

    code = "NIGHT_SERVED"


class LeaseLost(Conflict):
    """The lease a run held expired and another instance took it (this one stalled, or lost the database,
    for longer than the lease): the run stops at its next check and leaves the night to the new holder."""

    code = "LEASE_LOST"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One thing wrong with a request: where (``events.3.nom``, ``state``…) and why (French)."""

    field: str
    message: str
    type: str = "invalid"


class RequestRejected(GatewayError, ValueError):
    """A request the API cannot take as it is; ``errors`` name the field(s) at fault."""

    code = "VALIDATION"

    def __init__(self, message: str, *, errors: Sequence[FieldError] = (), code: str | None = None):
        super().__init__(message, code=code)
        self.errors = tuple(errors)


class PayloadTooLarge(RequestRejected):
    code = "TOO_LARGE"


class InvalidCursor(RequestRejected):
    code = "INVALID_CURSOR"


class MethodNotAllowed(GatewayError):
    code = "METHOD_NOT_ALLOWED"


class NotReady(GatewayError):
    """The API is up but cannot do its job: database unreachable, keys not loaded."""

    code = "NOT_READY"


#: Why a file or folder could not be used, by ``errno``, in French for the operator (`os_reason`).
_OS_REASONS = {
    errno.ENOENT: "introuvable",
    errno.EACCES: "permission refusée à l'utilisateur du service (droits de ce chemin, ou d'un dossier au-dessus)",
    errno.EPERM: "opération interdite à l'utilisateur du service (droits, ou attribut du fichier)",
    errno.EISDIR: "c'est un dossier, pas un fichier",
    errno.ENOTDIR: "un élément de son chemin n'est pas un dossier",
    errno.ENOSPC: "plus de place sur le disque",
    errno.EROFS: "système de fichiers en lecture seule",
    errno.EIO: "erreur d'entrée-sortie (disque, ou montage réseau décroché)",
    errno.EMFILE: "trop de fichiers ouverts par le service",
    errno.ENFILE: "trop de fichiers ouverts sur la machine",
}


#: The ``errno`` of an `OSError` subclass raised without one (``FileNotFoundError("…")``).
_ERRNO_OF = ((FileNotFoundError, errno.ENOENT), (PermissionError, errno.EACCES), (IsADirectoryError, errno.EISDIR),
             (NotADirectoryError, errno.ENOTDIR))


def _errno(exc: OSError) -> int | None:
    if exc.errno is not None:
        return exc.errno
    return next((number for kind, number in _ERRNO_OF if isinstance(exc, kind)), None)


def os_reason(exc: OSError) -> str:
    """Why ``exc``'s file or folder could not be used, in French: ``strerror`` is English, and an ``Errno`` says
    nothing to most operators. One wording for the keys, the exports, the drop folder and the data folder, which
    each had their own, two of them English. An error not foreseen keeps its own words."""
    return _OS_REASONS.get(_errno(exc)) or exc.strerror or type(exc).__name__


def unreadable(exc: OSError) -> str:
    """``introuvable``, or ``illisible : <why>`` (`os_reason`): after the name of what could not be read."""
    reason = os_reason(exc)
    return reason if _errno(exc) == errno.ENOENT else f"illisible : {reason}"
