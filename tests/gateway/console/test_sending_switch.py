"""Pausing and resuming all sending to DUDE from the console (`gateway.console.routes.sending`): an admin told of
a maintenance window had to leave the console for ``gateway sending pause`` or curl. The switch is the one the
CLI and the API flip (`gateway.pipeline.pause`), with the console user as actor; support staff see the banner,
not the links, and a post of theirs is refused."""

from __future__ import annotations

import re

import sqlalchemy as sa

from gateway.pipeline.pause import current, pause
from gateway.store.models import audit_t, utcnow
from tests.gateway.console.conftest import words

REASON = "Maintenance du DUDE annoncée de 20 h à 23 h"
WHEN = r"\d\d/\d\d/\d{4} à \d\d:\d\d"


def switches(gw) -> list[sa.Row]:
    """The audit rows of every pause and resume, oldest first."""
    with gw.engine.connect() as conn:
        return conn.execute(sa.select(audit_t).where(audit_t.c.action.in_(("SENDING_PAUSE", "SENDING_RESUME")))
                            .order_by(audit_t.c.id)).all()


def test_an_admin_pauses_with_a_reason_then_resumes_and_each_page_says_it(signed_in, gw) -> None:
    admin = signed_in("admin")
    dashboard = admin.get("/console/")
    assert 'href="/console/envoi/suspendre"' in dashboard.text and "L'envoi au DUDE est actif." in words(dashboard)

    confirm = admin.get("/console/envoi/suspendre")
    assert confirm.status_code == 200 and 'action="/console/actions/suspendre-envoi"' in confirm.text
    assert "Plus rien ne sera envoyé au DUDE" in words(confirm) and not current(gw.engine).paused  # not yet

    done = admin.post("/console/actions/suspendre-envoi", {"motif": f"  {REASON} "})
    assert done.status_code == 303 and re.fullmatch(r"/console/\?action=\d+", done.headers["location"])
    state = current(gw.engine)
    assert state.paused and state.changed_by == "console:admin" and state.reason == REASON
    [row] = switches(gw)
    assert (row.action, row.actor, row.comment) == ("SENDING_PAUSE", "console:admin", REASON)
    assert row.client_id is not None
    page = words(admin.get(done.headers["location"]))
    assert re.search(rf"Envoi au DUDE suspendu le {WHEN} par admin \(console\), motif : « {REASON} »\. "
                     "Rien ne part plus vers le DUDE", page), page
    assert "Envoi au DUDE suspendu depuis le" in page and f"par admin (console) : « {REASON} »" in page  # banner
    assert "L'envoi au DUDE est actif." not in page
    assert 'href="/console/envoi/reprendre"' in admin.get("/console/rejets").text  # the banner's, on every page

    confirm = admin.get("/console/envoi/reprendre")
    assert 'action="/console/actions/reprendre-envoi"' in confirm.text and current(gw.engine).paused
    assert "partiront avec la prochaine exécution" in words(confirm)
    done = admin.post("/console/actions/reprendre-envoi")
    assert done.status_code == 303
    state = current(gw.engine)
    assert not state.paused and state.changed_by == "console:admin"
    assert [(r.action, r.actor) for r in switches(gw)] == [("SENDING_PAUSE", "console:admin"),
                                                           ("SENDING_RESUME", "console:admin")]
    page = words(admin.get(done.headers["location"]))
    assert re.search(rf"Envoi au DUDE repris le {WHEN} par admin \(console\)\. Les lots qui attendaient", page), page
    assert "Envoi au DUDE suspendu depuis" not in page and "L'envoi au DUDE est actif." in page


def test_support_staff_see_the_pause_but_cannot_flip_it(signed_in, gw) -> None:
    support = signed_in("support_69001")
    page = support.get("/console/")
    assert "/console/envoi/" not in page.text and "L'envoi au DUDE est actif." not in words(page)
    for path in ("/console/envoi/suspendre", "/console/envoi/reprendre"):
        refused = support.get(path)
        assert refused.status_code == 403 and "réservé aux administrateurs" in words(refused), path
    refused = support.post("/console/actions/suspendre-envoi", {"motif": REASON})
    assert refused.status_code == 403
    assert "Action réservée aux administrateurs" in words(refused) and "rien n'a été fait" in words(refused)
    assert not current(gw.engine).paused and switches(gw) == []

    pause(gw.engine, by="cli:exploitant", reason=REASON, now=utcnow())
    page = support.get("/console/")
    assert "Envoi au DUDE suspendu depuis le" in words(page) and "/console/envoi/" not in page.text
    assert support.post("/console/actions/reprendre-envoi").status_code == 403
    assert current(gw.engine).paused and len(switches(gw)) == 1


def test_a_switch_without_the_sessions_csrf_token_is_refused(signed_in, gw) -> None:
    admin = signed_in("admin")
    for form in ({"motif": REASON}, {"motif": REASON, "csrf": "pas-le-bon"}):
        refused = admin.post("/console/actions/suspendre-envoi", form, csrf="csrf" in form)
        assert refused.status_code == 403 and "Action refusée" in words(refused)
    assert not current(gw.engine).paused
    pause(gw.engine, by="cli:exploitant", reason=REASON, now=utcnow())
    refused = admin.post("/console/actions/reprendre-envoi", csrf=False)
    assert refused.status_code == 403 and "Action refusée" in words(refused)
    assert current(gw.engine).paused and len(switches(gw)) == 1


def test_a_pause_without_a_reason_is_refused_and_nothing_is_paused(signed_in, gw) -> None:
    admin = signed_in("admin")
    for reason in ("", "   "):
        back = admin.post("/console/actions/suspendre-envoi", {"motif": reason})
        assert back.status_code == 303 and back.headers["location"].startswith("/console/envoi/suspendre?erreur=motif")
        page = admin.get(back.headers["location"])
        assert "Le motif est obligatoire pour suspendre l'envoi : rien n'a été suspendu." in words(page)
        assert 'aria-invalid="true"' in page.text
    assert not current(gw.engine).paused and switches(gw) == []
    assert "Envoi au DUDE suspendu" not in words(admin.get("/console/"))


def test_a_second_press_changes_nothing(signed_in, gw) -> None:
    """Two tabs, or two admins: a pause pressed while paused would move "since when" and replace the reason."""
    admin = signed_in("admin")
    first = pause(gw.engine, by="cli:exploitant", reason=REASON, now=utcnow())
    again = admin.post("/console/actions/suspendre-envoi", {"motif": "autre motif"})
    assert "L'envoi au DUDE était déjà suspendu : rien n'a été changé." in words(admin.get(again.headers["location"]))
    assert current(gw.engine) == first and len(switches(gw)) == 1
    assert "déjà suspendu" in words(admin.get("/console/envoi/suspendre"))  # no form to press

    admin.post("/console/actions/reprendre-envoi")
    again = admin.post("/console/actions/reprendre-envoi")
    assert "L'envoi au DUDE n'était pas suspendu : rien n'a été changé." in words(admin.get(again.headers["location"]))
    assert len(switches(gw)) == 2
    assert "rien à reprendre" in words(admin.get("/console/envoi/reprendre"))


def test_a_switchs_result_is_shown_to_who_made_it_only(signed_in) -> None:
    admin = signed_in("admin")
    done = admin.post("/console/actions/suspendre-envoi", {"motif": REASON})
    other = signed_in("support_69001")
    page = words(other.get(done.headers["location"]))
    assert "motif :" not in page and "Envoi au DUDE suspendu depuis le" in page  # the banner, not the result


def test_a_pause_pressed_after_the_session_ended_is_said_not_done_at_sign_in(signed_in, gw) -> None:
    """An admin who believes sending paused for DUDE's maintenance while it is not: the sign-in page said only
    that the session had ended, not that the pause was not made."""
    from tests.gateway.console.test_access import press_after_the_end

    admin = signed_in("admin")
    refused = press_after_the_end(admin, gw, {"motif": REASON}, action="suspendre-envoi")
    assert refused.status_code == 303 and "fin=1" in refused.headers["location"]
    said = words(admin.get(refused.headers["location"]))
    assert "la suspension de l'envoi au DUDE n'a pas été faite. Reconnectez-vous" in said, said
    assert not current(gw.engine).paused and switches(gw) == []
