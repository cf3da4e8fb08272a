"""Why a file or folder cannot be used, said in French (`gateway.errors.os_reason`, `unreadable`): the keys, the
exports, the drop folder and the data folder said Python's English ``strerror``, or each its own words."""

from __future__ import annotations

import errno

import pytest

from gateway.errors import os_reason, unreadable


@pytest.mark.parametrize(("exc", "reason", "said"), [
    (PermissionError(errno.EACCES, "Permission denied", "/x"),
     "permission refusée à l'utilisateur du service (droits de ce chemin, ou d'un dossier au-dessus)",
     "illisible : permission refusée à l'utilisateur du service (droits de ce chemin, ou d'un dossier au-dessus)"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"), "introuvable", "introuvable"),
    (FileNotFoundError("raised by hand, without an errno"), "introuvable", "introuvable"),
    (IsADirectoryError(), "c'est un dossier, pas un fichier", "illisible : c'est un dossier, pas un fichier"),
    (OSError(errno.ENOSPC, "No space left on device"), "plus de place sur le disque",
     "illisible : plus de place sur le disque"),
    (OSError(errno.ELOOP, "Too many levels of symbolic links"), "Too many levels of symbolic links",
     "illisible : Too many levels of symbolic links"),  # not foreseen: its own words, rather than nothing
])
def test_an_os_error_is_said_in_french_when_it_is_known(exc, reason, said) -> None:
    assert os_reason(exc) == reason and unreadable(exc) == said
