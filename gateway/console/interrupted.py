"""An action pressed after the session ended: not done, said so plainly, and offered again after sign-in.

A session ends (its hours are up, its token revoked) while a page stays open; the next press of "Clore" or
"Renvoyer" lands on the sign-in page. Nothing is done (an action needs a valid session), and the person must
be told so, or they believe the event closed. So the console remembers, for the sign-in that follows, which
action was stopped and on what, with the comment typed, in a short cookie of its own:

* never in the address (it would sit in the browser's history and the server's access log), nor in a log;
* encrypted and authenticated (`SessionCodec.stopped_dumps`): the console only ever shows back what it wrote
  itself, and the comment cannot be read in the browser's cookie store by whoever uses that browser next;
* only when the form's CSRF token is the ended session's own: the request came from a page of that session,
  not from another site, and the comment is that person's;
* bound to the API client of the ended session: shown, comment included, only when that client signs in
  again; anyone else signing in at that browser gets nothing of it, and the cookie is dropped;
* an hour at most (like the sign-in form), dropped once shown, and at sign-out.

The comment is put back in the form, never acted on: the person reads it and presses the button again.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from gateway.console.deps import csrf_ok
from gateway.console.session import SIGNIN_MAX_AGE, SessionCodec, SessionData, base_path

COOKIE = "p3g_console_action"
#: The actions whose loss matters, by the path they are posted to (sign-out is not one: the session had ended).
ACTIONS = {"/actions/clore": "clore", "/actions/renvoyer": "renvoyer", "/actions/renvoyer-filtre": "renvoyer-filtre",
           # an admin who believes sending paused for DUDE's maintenance while it is not: the sign-in page says it
           "/actions/suspendre-envoi": "suspendre-envoi", "/actions/reprendre-envoi": "reprendre-envoi"}
#: Browsers keep cookies of 4,096 bytes at most: a longer one (a long comment in many accents) would be lost
#: silently, so it is kept without its comment, and the page says to type it again.
_MAX_COOKIE = 3800
_WHAT = {"clore": "La clôture de l'événement", "renvoyer": "Le renvoi de l'événement",
         "renvoyer-filtre": "Le renvoi des événements du filtre",
         "suspendre-envoi": "La suspension de l'envoi au DUDE", "reprendre-envoi": "La reprise de l'envoi au DUDE"}
#: The sending switch's (`gateway.console.routes.sending`): on no event.
_SWITCH = frozenset({"suspendre-envoi", "reprendre-envoi"})
#: Said "faite", not "fait".
_FEMININE = frozenset({"clore", "suspendre-envoi", "reprendre-envoi"})


@dataclass(frozen=True, slots=True)
class Stopped:
    """What was pressed (``clore``, ``renvoyer``, ``renvoyer-filtre``; ``suspendre-envoi`` or ``reprendre-envoi``,
    said on the sign-in page only), on which event, by which API client."""

    client_id: int
    action: str
    key: str | None
    comment: str
    comment_lost: bool = False

    def notice(self) -> str:
        """What the sign-in page says: what was not done, and to do it again."""
        what = _WHAT[self.action] + (f" {self.key}" if self.key else "")
        done = "faite" if self.action in _FEMININE else "fait"
        return (f"Votre session a pris fin (durée écoulée ou jeton révoqué) : {what[0].lower()}{what[1:]} "
                f"n'a pas été {done}. Reconnectez-vous, puis recommencez.")

    def message(self) -> str:
        """What the page of the action says once signed in again."""
        if self.action == "clore":
            text = "La clôture de cet événement n'a pas été faite : votre session avait pris fin. "
            if self.comment:
                return text + ("Votre commentaire est repris ci-dessous : vérifiez-le, puis cliquez de nouveau "
                               "sur « Clore l'événement ».")
            if self.comment_lost:
                return text + "Votre commentaire, trop long pour être gardé, est à saisir de nouveau."
            return text + "Cliquez de nouveau sur « Clore l'événement » si c'est toujours à faire."
        if self.action == "renvoyer":
            return ("Le renvoi de cet événement n'a pas été fait : votre session avait pris fin. Cliquez de nouveau "
                    "sur « Renvoyer l'événement » si c'est toujours à faire.")
        return ("Le renvoi des événements du filtre n'a pas été fait : votre session avait pris fin. Vérifiez le "
                "nombre ci-dessous, puis confirmez de nouveau.")


def stopped_by_end(request: Request, form: FormData, ended: SessionData | None) -> Stopped | None:
    """The action of this refused POST, if it is one and its form is the ended session's own (CSRF token)."""
    action = ACTIONS.get(request.url.path.removeprefix(base_path(request)))
    if action is None or ended is None or not csrf_ok(request, _text(form, "csrf"), ended.csrf):
        return None
    key = None if action in _SWITCH else _text(form, "cle")[:300] or None
    return Stopped(ended.client_id, action, key, _text(form, "commentaire")[:1000])


def remember(response: Response, request: Request, codec: SessionCodec, stopped: Stopped) -> None:
    data = {"c": stopped.client_id, "a": stopped.action, "k": stopped.key, "m": stopped.comment}
    value = codec.stopped_dumps(data)
    if len(value) > _MAX_COOKIE:
        value = codec.stopped_dumps({**data, "m": "", "l": True})
    response.set_cookie(COOKIE, value, max_age=SIGNIN_MAX_AGE, path=base_path(request) or "/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def recall(request: Request, codec: SessionCodec) -> Stopped | None:
    """The action stopped at this browser within the hour, whoever signs in (the sign-in page names it only)."""
    raw = codec.stopped_loads(request.cookies.get(COOKIE), max_age=SIGNIN_MAX_AGE)
    if raw is None or not isinstance(raw.get("c"), int) or raw.get("a") not in _WHAT:
        return None
    key, comment = raw.get("k"), raw.get("m")
    return Stopped(raw["c"], raw["a"], key if isinstance(key, str) else None,
                   comment if isinstance(comment, str) else "", raw.get("l") is True)


def recall_for(request: Request, codec: SessionCodec, client_id: int, key: str | None) -> Stopped | None:
    """The stopped action to show on a page: this client's, on the event ``key`` (``None``: the filter resend)."""
    stopped = recall(request, codec)
    if stopped is None or stopped.client_id != client_id or stopped.key != key \
            or (key is None) != (stopped.action == "renvoyer-filtre"):
        return None
    return stopped


def forget(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path=base_path(request) or "/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""
