"""The support console (issue 4): server-rendered French pages under ``/console`` for support staff to see,
understand, fix and resend rejected events. ``mount_console(app, gw)`` adds it to the API's application.
"""

from __future__ import annotations

from fastapi import FastAPI

from gateway.console.app import create_console
from gateway.context import Gateway

PREFIX = "/console"


def mount_console(app: FastAPI, gw: Gateway) -> None:
    app.mount(PREFIX, create_console(gw), name="console")
