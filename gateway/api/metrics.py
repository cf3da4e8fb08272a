"""Prometheus metrics (issue 3): what the store says, read at each scrape, and what the API serves.

The business figures are *read from the store* when Prometheus scrapes, not counted in memory: they
stay true across restarts and whichever instance (API, scheduler, ``gateway run``) did the work, and
several instances sharing one database report the same numbers. They are whole-gateway figures, so
``/metrics`` asks for an admin token (Prometheus: ``authorization: {credentials: p3g_…}``).

* ``gateway_events{state}`` — events by state (every version);
* ``gateway_envelopes{state}`` — envelopes by state;
* ``gateway_envelopes_sent_total`` — envelopes posted at least once;
* ``gateway_envelope_attempts_total``, ``gateway_envelope_retries_total`` — posts, and posts after the first;
* ``gateway_report_latency_seconds`` — receipt to reconciled report, per envelope (histogram);
* ``gateway_run_duration_seconds`` — finished runs (histogram); ``gateway_runs_in_progress``;
* ``gateway_last_run_finished_timestamp_seconds{outcome}`` — when the last run (not a dry run) of each outcome
  ended, Unix time: what an alert watches (``time() - max(…{outcome=~"TERMINE.*"}) > 26 * 3600``: no night;
  a night DUDE did not acknowledge whole ends ``TERMINE_SANS_ACCUSE``, and ``gateway_envelopes{state=~"SIGNE|ENVOYE"}``
  staying above 0 says DUDE is still owed envelopes);
* ``gateway_sending_paused`` — 1 while sending to DUDE is paused (``gateway sending pause``), else 0;
* ``gateway_drop_folder_ok`` — 0 while the drop folder (``GATEWAY_INPUT_DIR``) is missing, a file or not
  readable, so that every night reads nothing (`gateway.nightly.drop_folder_check`), else 1;
* ``gateway_certificate_expiry_days{role,subject,sha256}`` — days until each certificate expires (the
  gateway's, ``role="passerelle"``, and the trusted DUDE ones), read from the files (issue 5);
  ``gateway_certificate_start_days{…}`` — days until its validity starts: above 0, not valid yet (a renewal
  put in place too early, or a wrong clock), refused as an expired one is; negative once started. ``sha256``
  (the fingerprint's first 16 hex digits) tells apart two certificates of one subject: DUDE's current one and
  its renewal side by side in the trust folder were one series twice;
* ``gateway_certificates_ok`` — 1 while the certificates let a night work, 0 when `gateway.certificates.problems`
  finds one failing (ours expired or not valid yet, no DUDE certificate valid now) or one cannot be read: the
  night stops on ``KEYS``. The series above then say which, when they can be read;
* ``gateway_api_requests_total{method,operation,status}``, ``gateway_api_request_duration_seconds{operation}``
  (``operation``: the endpoint's name, such as ``read_event``).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.codes import EnvelopeState, EventState
from gateway.certificates import check_certificates, problems
from gateway.context import Gateway
from gateway.nightly import drop_folder_check
from gateway.pipeline import pause
from gateway.errors import GatewayError
from gateway.store.models import envelopes_t, events_t, runs_t

REPORT_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 6 * 3600, 12 * 3600, 24 * 3600)
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
_LAST_RUN = "Fin de la dernière exécution, par issue (temps Unix)"
_PAUSED = "Envoi au DUDE suspendu (1) ou non (0)"
_DROP_FOLDER = "Dossier de dépôt lisible (1) ; introuvable, fichier ou illisible (0) : aucune nuit ne lit d'export"
_EXPIRY = "Jours avant l'expiration"
_START = "Jours avant le début de validité (au-dessus de 0 : pas encore valide)"
_CERTIFICATES_OK = ("Certificats utilisables (1) ; le nôtre expiré ou pas encore valide, aucun du DUDE valide, ou "
                    "illisibles (0) : la nuit s'arrête (KEYS)")
#: ``sha256``: the certificate's SHA-256 fingerprint, its first 16 hex digits (as ``gateway check`` shows it).
_CERTIFICATE_LABELS = ["role", "subject", "sha256"]
#: Read by prometheus_client when it is imported: set, counters are kept in files of that folder.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _histogram(name: str, doc: str, values: Iterable[float], buckets: tuple[float, ...]) -> HistogramMetricFamily:
    values = sorted(values)
    cumulative = [(str(float(b)), float(bisect_left(values, b + 1e-9))) for b in buckets]
    cumulative.append(("+Inf", float(len(values))))
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=float(sum(values)))


class StoreCollector(Collector):
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def describe(self) -> Iterator[Metric]:  # names only: no database query when registering
        yield GaugeMetricFamily("gateway_events", "Événements par état", labels=["state"])
        yield GaugeMetricFamily("gateway_envelopes", "Lots par état", labels=["state"])
        yield CounterMetricFamily("gateway_envelopes_sent", "Lots envoyés au moins une fois")
        yield CounterMetricFamily("gateway_envelope_attempts", "Envois de lots (tentatives)")
        yield CounterMetricFamily("gateway_envelope_retries", "Envois de lots après le premier")
        yield HistogramMetricFamily("gateway_report_latency_seconds", "Accusé de réception → compte rendu")
        yield HistogramMetricFamily("gateway_run_duration_seconds", "Durée des exécutions terminées")
        yield GaugeMetricFamily("gateway_runs_in_progress", "Exécutions en cours")
        yield GaugeMetricFamily("gateway_last_run_finished_timestamp_seconds", _LAST_RUN, labels=["outcome"])
        yield GaugeMetricFamily("gateway_sending_paused", _PAUSED)
        yield GaugeMetricFamily("gateway_drop_folder_ok", _DROP_FOLDER)
        yield GaugeMetricFamily("gateway_certificate_expiry_days", _EXPIRY, labels=_CERTIFICATE_LABELS)
        yield GaugeMetricFamily("gateway_certificate_start_days", _START, labels=_CERTIFICATE_LABELS)
        yield GaugeMetricFamily("gateway_certificates_ok", _CERTIFICATES_OK)

    def collect(self) -> Iterator[Metric]:
        e, v, r = events_t.c, envelopes_t.c, runs_t.c
        with self.gw.engine.connect() as conn:
            events = dict(conn.execute(sa.select(e.state, sa.func.count()).group_by(e.state)).all())
            envelopes = dict(conn.execute(sa.select(v.state, sa.func.count()).group_by(v.state)).all())
            sent, attempts = conn.execute(sa.select(
                sa.func.count(v.first_sent_at), sa.func.coalesce(sa.func.sum(v.attempts), 0))).one()
            latencies = [(rep - rec).total_seconds() for rec, rep in conn.execute(
                sa.select(v.receipt_at, v.report_at).where(v.receipt_at.is_not(None), v.report_at.is_not(None)))]
            durations = [(end - start).total_seconds() for start, end in conn.execute(
                sa.select(r.started_at, r.finished_at).where(r.finished_at.is_not(None)))]
            running = conn.execute(sa.select(sa.func.count()).where(r.outcome == "EN_COURS")).scalar_one()
            last_runs = conn.execute(sa.select(r.outcome, sa.func.max(r.finished_at)).where(
                r.finished_at.is_not(None), r.dry_run.is_(False)).group_by(r.outcome)).all()
            paused = pause.current(conn).paused
        gauge = GaugeMetricFamily("gateway_events", "Événements par état", labels=["state"])
        for state in EventState:
            gauge.add_metric([state.value], events.get(state.value, 0))
        yield gauge
        gauge = GaugeMetricFamily("gateway_envelopes", "Lots par état", labels=["state"])
        for state in EnvelopeState:
            gauge.add_metric([state.value], envelopes.get(state.value, 0))
        yield gauge
        yield CounterMetricFamily("gateway_envelopes_sent", "Lots envoyés au moins une fois", value=sent)
        yield CounterMetricFamily("gateway_envelope_attempts", "Envois de lots (tentatives)", value=attempts)
        yield CounterMetricFamily("gateway_envelope_retries", "Envois de lots après le premier",
                                  value=max(0, attempts - sent))
        yield _histogram("gateway_report_latency_seconds", "Accusé de réception → compte rendu", latencies,
                         REPORT_BUCKETS)
        yield _histogram("gateway_run_duration_seconds", "Durée des exécutions terminées", durations, RUN_BUCKETS)
        yield GaugeMetricFamily("gateway_runs_in_progress", "Exécutions en cours", value=running)
        gauge = GaugeMetricFamily("gateway_last_run_finished_timestamp_seconds", _LAST_RUN, labels=["outcome"])
        for outcome, finished in sorted(last_runs):
            gauge.add_metric([outcome], finished.timestamp())
        yield gauge
        yield GaugeMetricFamily("gateway_sending_paused", _PAUSED, value=1 if paused else 0)
        yield GaugeMetricFamily("gateway_drop_folder_ok", _DROP_FOLDER,
                                value=0 if drop_folder_check(self.gw.settings) else 1)
        yield from self._certificates()

    def _certificates(self) -> Iterator[Metric]:
        expiry = GaugeMetricFamily("gateway_certificate_expiry_days", _EXPIRY, labels=_CERTIFICATE_LABELS)
        start = GaugeMetricFamily("gateway_certificate_start_days", _START, labels=_CERTIFICATE_LABELS)
        try:
            statuses = check_certificates(self.gw)
        except GatewayError:  # unreadable, or no keys yet: /readyz says which file and why
            statuses, usable = [], False
        else:
            usable = not problems(statuses, trust_dir=self.gw.settings.gateway_trust_dir)[0]
        for status in statuses:
            labels = [status.role, status.subject, status.fingerprint[:16]]
            expiry.add_metric(labels, round(status.days_left, 2))
            start.add_metric(labels, round(status.days_to_start, 4))  # 2 digits: 0 up to 7 minutes before
        yield expiry
        yield start
        yield GaugeMetricFamily("gateway_certificates_ok", _CERTIFICATES_OK, value=1 if usable else 0)


class ApiMetrics:
    """One registry per app (tests create many apps; the global registry would refuse duplicates).

    Under ``gateway serve --workers N`` the supervisor gives its workers a folder
    (``PROMETHEUS_MULTIPROC_DIR``, `gateway.api.worker`): each worker's request counters live there
    (prometheus_client's multiprocess mode) and every scrape adds them up, so ``/metrics`` shows the
    whole service whichever worker answers it.
    """

    def __init__(self, gw: Gateway) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(StoreCollector(gw))
        shared = os.environ.get(MULTIPROCESS_DIR_ENV)
        if shared:
            MultiProcessCollector(self.registry, path=shared)
        own = None if shared else self.registry  # shared: the collector above reads them from the folder
        self.requests = Counter("gateway_api_requests", "Requêtes de l'API", ["method", "operation", "status"],
                                registry=own)
        self.latency = Histogram("gateway_api_request_duration_seconds", "Durée des requêtes de l'API", ["operation"],
                                 registry=own,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))

    def observe(self, method: str, operation: str, status: int, seconds: float) -> None:
        self.requests.labels(method, operation, str(status)).inc()
        self.latency.labels(operation).observe(seconds)
