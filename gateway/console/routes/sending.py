"""Pausing and resuming all sending to DUDE from the console, for admins (brief §5: "an operator can pause all
sending"; `gateway.pipeline.pause`).

When DUDE announces a maintenance window, an admin signed in to the console had to leave it for a terminal
(``gateway sending pause``) or curl (``POST /api/v1/sending/pause``). Here, as the console's other actions: a
link (the dashboard's when sending is active, the banner's when paused) opens a confirmation page saying
what the switch does, the pause with its reason required; the form posts with the session's CSRF token, and
the answer redirects to the dashboard, which reads back what was done from the audit row
(`gateway.console.paused.switch_message`) under the banner that now says it.

The switch is `gateway.pipeline.pause`'s, called exactly as the API calls it, with the console user as actor
(``console:<client name>``): the banner, the audit log and the run summaries name who paused. Support staff
see the switch (the banner on every page) but not the links; opening a confirmation page or posting an
action anyway is a 403 page: the API gives flipping it to admins only. A press that finds the switch already
where it was asked to go (a second tab, another admin) changes nothing: re-pausing would move "since when"
and replace the reason that whoever finds it paused reads.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.console.deps import CheckedUserDep, ConsoleUser, GatewayDep, UserDep
from gateway.console.paused import ALREADY_ACTIVE, ALREADY_PAUSED, PAUSED, RESUMED, last_switch_by
from gateway.console.session import base_path
from gateway.console.templating import render
from gateway.context import Gateway
from gateway.errors import RequestRejected
from gateway.pipeline import pause

log = logging.getLogger("gateway.console")
router = APIRouter()


def _admins_only(request: Request, user: ConsoleUser) -> Response | None:
    """The 403 page for a support user (the switch is the admins', as in the API), else ``None``."""
    if user.is_admin:
        return None
    log.warning("console: %s %s refused, %s is not an admin", request.method, request.url.path, user.actor)
    return render(request, "erreur.html", {
        "user": user, "title": "Action réservée aux administrateurs", "errors": (),
        "text": "Suspendre ou reprendre l'envoi au DUDE est réservé aux administrateurs de la passerelle : rien "
                "n'a été fait. L'état de l'envoi est affiché en haut de chaque page."}, status=403)


def _confirmation(request: Request, user: ConsoleUser, gw: Gateway, *, pausing: bool,
                  reason_missing: bool = False) -> Response:
    refused = _admins_only(request, user)
    if refused is not None:
        return refused
    state = pause.current(gw.engine)
    return render(request, "confirmer_envoi.html", {
        "user": user, "pausing": pausing, "state": state, "paused": state if state.paused else None,
        "reason_max": pause.REASON_MAX, "reason_missing": reason_missing})


@router.get("/envoi/suspendre", name="confirmer_suspension")
def confirm_pause(request: Request, user: UserDep, gw: GatewayDep, erreur: str | None = None) -> Response:
    return _confirmation(request, user, gw, pausing=True, reason_missing=erreur == "motif")


@router.get("/envoi/reprendre", name="confirmer_reprise")
def confirm_resume(request: Request, user: UserDep, gw: GatewayDep) -> Response:
    return _confirmation(request, user, gw, pausing=False)


def _done(request: Request, action: str | int | None) -> RedirectResponse:
    return RedirectResponse(f"{base_path(request)}/?action={action}", status_code=303)


@router.post("/actions/suspendre-envoi", name="suspendre_envoi")
async def pause_sending(request: Request, user: CheckedUserDep, gw: GatewayDep,
                        motif: Annotated[str, Form(max_length=pause.REASON_MAX)] = "") -> Response:
    refused = _admins_only(request, user)
    if refused is not None:
        return refused

    def switch() -> str | int | None:
        if pause.pause(gw.engine, by=user.actor, reason=motif, now=gw.clock(), client_id=user.principal.client_id,
                       only_if_flipped=True) is None:  # in the same statement: two admins at once pause once
            return ALREADY_PAUSED
        with gw.engine.connect() as conn:
            return last_switch_by(conn, user.actor, PAUSED)

    try:
        action = await run_in_threadpool(switch)
    except RequestRejected:  # no reason: nothing paused, back to the form, which says so next to the field
        return RedirectResponse(f"{base_path(request)}/envoi/suspendre?erreur=motif#motif", status_code=303)
    return _done(request, action)


@router.post("/actions/reprendre-envoi", name="reprendre_envoi")
async def resume_sending(request: Request, user: CheckedUserDep, gw: GatewayDep) -> Response:
    refused = _admins_only(request, user)
    if refused is not None:
        return refused

    def switch() -> str | int | None:
        if pause.resume(gw.engine, by=user.actor, now=gw.clock(), client_id=user.principal.client_id,
                        only_if_flipped=True) is None:
            return ALREADY_ACTIVE
        with gw.engine.connect() as conn:
            return last_switch_by(conn, user.actor, RESUMED)

    return _done(request, await run_in_threadpool(switch))
