"""Rendering for people (rich tables, in French): a run summary, and times as the console shows them."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gateway.codes import EnvelopeState, EventState

if TYPE_CHECKING:  # the pipeline is imported by the commands that run it, not by `gateway --help`
    from gateway.pipeline.run import RunSummary


def fr(n: int) -> str:
    """A count the French way: 20 000."""
    return f"{n:,}".replace(",", "\u202f")


def when(value: datetime | None, tz: tzinfo, *, seconds: bool = False) -> str:
    """A time as the console shows it (JJ/MM/AAAA HH:MM, in the gateway's zone), so that a support agent
    reading the command line and the console side by side sees the same time for the same envelope.

    The console's own filter (`gateway.console.templating.make_templates`) lives in the web stack, which the
    command line does not import: this is the same format, kept here for the commands. The store's times are
    UTC; one without a zone (never written by the store) is taken as UTC too, not as the machine's zone."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(tz).strftime("%d/%m/%Y %H:%M:%S" if seconds else "%d/%m/%Y %H:%M")


def zone_note(tz: ZoneInfo) -> str:
    """Said once under a table with times: the console says its times are Paris's, the command line says its zone."""
    return f"Heures du fuseau {tz.key}"


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _states_table(title: str, states) -> Table:
    table = Table(title=title)
    table.add_column("État final")
    table.add_column("Événements", justify="right")
    table.add_column("Signification")
    for state, count in sorted(states.items(), key=lambda kv: -kv[1]):
        table.add_row(state, fr(count), EventState(state).label)
    table.add_row("[bold]Total[/]", f"[bold]{fr(sum(states.values()))}[/]", "")
    return table


def _lowered(label: str) -> str:
    return label[:1].lower() + label[1:]


def render_summary(summary: RunSummary, console: Console, *, title: str = "Nuit", tz: tzinfo | None = None) -> None:
    """The run's summary; its times in ``tz`` (the gateway's zone), else UTC."""
    heading = f"{title} — exécution n° {summary.run_id}" + (" (à blanc)" if summary.dry_run else "")
    reported = summary.reports.get("lots", 0)
    if summary.states or not (summary.resumed or reported):
        console.print(_states_table(heading, summary.states))
    else:  # a catch-up that only resent or reconciled: its own table would read "Total 0"; what it did is below
        console.print(f"[bold]{heading}[/] : aucune nouvelle ligne lue.")

    ing = summary.ingest
    console.print(
        f"Lignes lues : {fr(ing.lines)} — nouveaux : {fr(ing.new_events)}, nouvelles versions : "
        f"{fr(ing.new_versions)}, déjà connus (non renvoyés) : {fr(ing.duplicates)}, invalides : {fr(ing.invalid)}")
    if summary.dry_run and summary.would_send is not None:
        console.print(f"[bold]À envoyer cette nuit : {fr(summary.would_send)}[/]")

    if summary.rejects:
        rej = Table(title="Principaux motifs de rejet")
        rej.add_column("Code")
        rej.add_column("Nombre", justify="right")
        rej.add_column("Libellé")
        for item in summary.top_rejects():
            rej.add_row(item["code"], str(item["count"]), item["label"])
        console.print(rej)

    if summary.envelopes:
        # The label's first letter only: "rejeté en bloc par le dude" lowered DUDE's name with the rest.
        parts = [f"{_lowered(EnvelopeState(k).label)} : {v}" for k, v in sorted(summary.envelopes.items())
                 if k in EnvelopeState.__members__]
        console.print("Lots : " + ", ".join(parts))
    if summary.sending_paused:
        from gateway.pipeline.pause import SendingState

        paused = summary.sending_paused
        since = datetime.fromisoformat(paused["changed_at"]) if paused.get("changed_at") else None
        state = SendingState(True, since, paused.get("changed_by"), paused.get("reason"))
        console.print(f"[bold yellow]{escape(_upper_first(state.describe(tz)))}[/] : "
                      f"rien n'a été envoyé ; {fr(summary.sending.get('scelles_non_envoyes', 0))} lot(s) scellé(s) "
                      "partiront à la reprise (`gateway sending resume`).")
    resumed = summary.sending.get("reprises", 0)
    if resumed:  # their events were counted in the run that read them; said here, or a take-over reads "Total 0"
        console.print(f"Lots repris : {fr(resumed)} (scellés par une exécution précédente, renvoyés avec le même "
                      "IdLot ; leurs événements comptent aussi dans l'exécution qui les a lus).")
        if summary.resumed:
            console.print(_states_table("Événements des lots repris", summary.resumed))
    if reported:  # a catch-up's reports are of earlier runs' envelopes: said here, or it says nothing of them
        console.print(f"Comptes rendus rapprochés : {fr(reported)} lot(s) (de cette exécution ou laissés en attente "
                      f"par une précédente) — événements acceptés : {fr(summary.reports.get('ACCEPTE', 0))}, "
                      f"rejetés : {fr(summary.reports.get('REJETE', 0))}.")
    waiting, quarantined = summary.sending.get("sans_accuse", 0), summary.sending.get("quarantaine", 0)
    refused = summary.sending.get("acces_refuse", 0)  # of those without a receipt, at their first post
    if waiting := waiting - refused:
        console.print(f"[bold yellow]{fr(waiting)} lot(s) sans accusé de réception du DUDE[/] après toutes les "
                      "tentatives : gardés, ils repartent (même IdLot) à la prochaine exécution ou au prochain "
                      "passage du planificateur.")
    polls_refused = summary.reports.get("acces_refuse", 0)
    if refused or polls_refused:
        what = " et ".join(part for part in (
            f"{fr(refused)} lot(s) refusé(s) à l'envoi" if refused else "",
            f"{fr(polls_refused)} relevé(s) de compte rendu refusé(s)" if polls_refused else "") if part)
        console.print("[bold red]Le DUDE, ou un filtre devant lui, refuse la passerelle[/] (HTTP 401 ou 403) : "
                      f"{what}, sans faute de leur part. L'adresse de la passerelle n'est pas, ou plus, admise, ou un "
                      "mandataire HTTP demande une authentification : voir avec l'agence ou le réseau (`gateway "
                      "check` le redit). Rien n'est perdu : les lots repartent (même IdLot), les comptes rendus "
                      "sont relevés de nouveau, une fois l'accès rétabli.")
    if unsent := summary.sending.get("non_envoyes", 0):
        console.print(f"[bold yellow]{fr(unsent)} lot(s) non envoyé(s)[/] : le DUDE était injoignable ou "
                      "refusait la passerelle, ou un lot portant une version précédente de leurs événements attend "
                      "encore son accusé ; gardés, ils partent (même IdLot) à la prochaine exécution ou au "
                      "prochain passage du planificateur.")
    if quarantined:
        console.print(f"[bold yellow]{fr(quarantined)} lot(s) mis en quarantaine[/] : le DUDE les refuse à chaque "
                      "envoi (HTTP 500) ; leurs événements repartent en lots plus petits, et un événement sur "
                      "lequel il échoue seul finit SANS_REPONSE (console, à corriger ou clore).")
    for said, found in [("[yellow]Attention[/]", summary.file_warnings),
                        ("[red]Fichier refusé[/]", summary.file_errors)]:
        for item in found:  # an export's name and its bad value are text from outside: never markup
            console.print(f"{said} {escape(item['file'])} ({item['code']}) : {escape(item['message'])}")
    if summary.durations:
        console.print("Durées : " + ", ".join(f"{k} {v:.2f} s" for k, v in summary.durations.items()))
