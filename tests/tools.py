"""Helpers the tests share: paths, and the foreign tools (xmllint, xmlsec1) that judge our documents."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from adapters.dude.schema import XSD_DIR

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SCHEMA = XSD_DIR / "dude-echanges-v1.xsd"


def need(tool: str) -> str:
    """The path of a Debian tool the tests cross-check with; CI installs it, so its absence fails."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed (apt-get install {'xmlsec1' if tool == 'xmlsec1' else 'libxml2-utils'})")
    return path


def xmllint_validates(path: Path) -> tuple[bool, str]:
    proc = subprocess.run([need("xmllint"), "--noout", "--schema", str(SCHEMA), str(path)],
                          capture_output=True, text=True)
    return proc.returncode == 0, proc.stderr


def xmlsec1_verifies(path: Path, cert: Path) -> tuple[bool, str]:
    proc = subprocess.run([need("xmlsec1"), "--verify", "--trusted-pem", str(cert), str(path)],
                          capture_output=True, text=True)
    return proc.returncode == 0, proc.stderr


def stop_server(server: subprocess.Popen, *, timeout: float = 30) -> None:
    """Stop a ``gateway serve`` the test started as a service manager would (SIGTERM), killing it if it does not
    stop within ``timeout``, which the test then fails on."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        raise
