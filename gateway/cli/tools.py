"""``gateway keys``, ``gateway fixtures`` and ``gateway emulator``: set-up and test tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import DataDirOpt, JsonOpt, console, err_console, fail, load_settings, print_json
from gateway.errors import ConfigurationError, GatewayError

keys_app = typer.Typer(help="Development keys and certificates.", no_args_is_help=True)
fixtures_app = typer.Typer(help="Realistic test data.", no_args_is_help=True)
emulator_app = typer.Typer(help="The DUDE emulator (the other side, for tests and the demo).", no_args_is_help=True)


@keys_app.command("init")
def keys_init(
    data_dir: DataDirOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing keys.")] = False,
    days: Annotated[int, typer.Option(min=1, help="Validity of the certificates, in days.")] = 730,
    password_file: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, readable=True,
        help="Encrypt the gateway's private key with the password in this file (then run with "
             "GATEWAY_KEY_PASSWORD_FILE set to it). GATEWAY_KEY_PASSWORD works too.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create key pairs and self-signed certificates for the gateway and the emulator, each trusting the other."""
    from gateway.keys import init_dev_keys

    settings = load_settings(data_dir=data_dir, key_password_file=password_file)
    try:
        made = init_dev_keys(settings, overwrite=force, days=days)
        encrypted = b"ENCRYPTED" in made.gateway.key_file.read_bytes()[:64]
    except GatewayError as exc:
        raise fail(exc) from exc
    info = {"created": made.created, "made": list(made.made), "encrypted": encrypted,
            "gateway": {"key": str(made.gateway.key_file), "certificate": str(made.gateway.cert_file),
                        "trust_dir": str(made.gateway.trust_dir)},
            "emulator": {"key": str(made.emulator.key_file), "certificate": str(made.emulator.cert_file),
                         "trust_dir": str(made.emulator.trust_dir)}}
    if json_out:
        print_json(info)
        return
    def said(side: str) -> str:
        return "créées" if side in made.made else "déjà présentes, gardées (--force pour les remplacer)"

    console.print(f"Clés de la passerelle {said('gateway')} : {made.gateway.key_file}, {made.gateway.cert_file}"
                  f"{' (clé chiffrée par mot de passe)' if encrypted else ''}\n"
                  f"Clés de l'émulateur {said('emulator')} : {made.emulator.key_file}, {made.emulator.cert_file}",
                  soft_wrap=True)


@keys_app.command("show-cert")
def keys_show_cert(data_dir: DataDirOpt = None) -> None:
    """Print the gateway's certificate (PEM), to register it with DUDE."""
    from gateway.keys import certificate_pem

    settings = load_settings(data_dir=data_dir)
    try:
        typer.echo(certificate_pem(settings.gateway_cert_file), nl=False)
    except GatewayError as exc:
        raise fail(exc) from exc


@fixtures_app.command("generate")
def fixtures_generate(
    events: Annotated[int, typer.Option(min=1, help="Events in the night.")] = 20_000,
    out: Annotated[Path, typer.Option(file_okay=False, help="Output folder.")] = Path("nuit"),
    seed: Annotated[int, typer.Option(help="Same seed, same night.")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Generate a realistic national night of Parcours 3 exports and the matching DUDE registry."""
    from gateway.fixturegen import generate_night

    night = generate_night(out, events=events, seed=seed)
    _warn_if_drop_folder(out, night.registry_file)
    if json_out:
        print_json({"exports": [str(p) for p in night.export_files], "registry": str(night.registry_file),
                    "manifest": str(night.manifest_file), "expected": night.expected})
        return
    console.print(f"{len(night.export_files)} exports dans {out}, registre {night.registry_file}, "
                  f"manifeste {night.manifest_file}")


def _warn_if_drop_folder(out: Path, registry: Path) -> None:
    """The night's registry (``registre-dude.csv``, the emulator's file) is a CSV like the exports beside it:
    generated into the drop folder, every night then read it as an export, and refused it
    (``P3_COLUMN_MISSING``), night after night. Said when ``out`` is the drop folder the settings name."""
    try:
        drop = load_settings().runs_input_dir
    except typer.Exit:  # settings that do not load: said by whatever runs next, not a generator's business
        return
    if out.resolve() == drop.resolve():
        err_console.print(f"[bold yellow]Attention[/] : {registry} est le registre de l'émulateur, pas un export : "
                          "dans le dossier de dépôt, chaque nuit le lirait et le refuserait ; le déplacer (gateway "
                          "emulator serve --registry …).", soft_wrap=True)


@emulator_app.command("serve")
def emulator_serve(
    port: Annotated[int, typer.Option(help="Loopback port.")] = 8790,
    registry: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                  help="Jobseeker registry (CSV, brief §4).")] = None,
    data_dir: DataDirOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    report_delay: Annotated[float, typer.Option(min=0, help="Seconds before a report is available.")] = 1.0,
    callback_url: Annotated[str | None, typer.Option(help="Where to push reports (the gateway's callback).")] = None,
    faults: Annotated[str | None, typer.Option(
        help='Faults on demand, as JSON or @file.json: {"error_share": 0.1, "cut_share": 0.05, …} '
             "(fields of adapters.dude.emulator.faults.Faults; change them later with PUT /dude/v1/pannes).")] = None,
    fault_seed: Annotated[int | None, typer.Option(help="Seed of the faults' draws (same seed, same faults).")] = None,
) -> None:
    """Serve the DUDE emulator over HTTP (POST /dude/v1/lots, GET /dude/v1/lots/{id}/compte-rendu)."""
    from adapters.dude.emulator.app import serve
    from adapters.dude.emulator.config import EmulatorConfig
    from gateway.keys import init_dev_keys

    from gateway.api.serving import cannot_listen

    chosen = _faults(faults, fault_seed)
    problem = cannot_listen(host, port, what="l'émulateur", port_hint="--port", host_hint="--host")
    if problem:  # said before the banner, which would announce an emulator that never starts
        raise fail(ConfigurationError(f"impossible d'écouter sur {host}:{port} : {problem}."))
    settings = load_settings(data_dir=data_dir)
    init_dev_keys(settings, sides=("emulator",))  # its own, if missing; never the gateway's
    overrides = {"report_delay_seconds": report_delay, "callback_url": callback_url}
    if registry is not None:
        overrides["registry_file"] = registry
    config = EmulatorConfig.for_settings(settings, **overrides)
    console.print(f"Émulateur DUDE sur http://{host}:{port}/dude/v1 (registre : {config.registry_file})"
                  + (f", pannes : {json.dumps(chosen.as_dict(), sort_keys=True)}" if chosen.any else ""))
    try:
        serve(config, host=host, port=port, faults=chosen)
    except GatewayError as exc:  # its keys cannot be used (`Erreur KEYS`, naming the file): said, not a traceback
        raise fail(exc) from exc


def _faults(text: str | None, seed: int | None):
    """``--faults`` (JSON, or ``@path`` to a JSON file) and ``--fault-seed`` as one `Faults` value."""
    from adapters.dude.emulator.faults import Faults

    try:
        if text is not None and text.startswith("@"):
            text = Path(text[1:]).read_text(encoding="utf-8")
        values = json.loads(text) if text else {}
        if seed is not None:
            values = {**values, "seed": seed}
        return Faults.from_mapping(values)
    except (OSError, ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults") from exc
