"""`make run`: the product beside a sandbox EHR seeded with the synthetic patients, offline.

    real FHIR server (sekmet-fhir)  <-- loaded with the synthetic patients
            ^                   ^
            | prefetch          | SMART reads, through a facade that checks the EHR's tokens
    sandbox EHR (this process): patient list, cards as an EHR shows them, launch buttons,
                                SMART authorization server (Authlib), CDS client with a JWT
            |  CDS Hooks call                |  EHR launch
            v                                v
    the product (`anastrozole-cds serve`, gunicorn): CDS Hooks service + SMART app

Everything listens on 127.0.0.1 and stops on Ctrl-C.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import requests
from flask import Flask, Response, abort, request
from joserfc.jwk import ECKey, KeySet
from markdown_it import MarkdownIt
from werkzeug.serving import make_server

from sandbox.check import CheckRequest, run_check
from sandbox.ehr_auth import STYLE_PATH, SandboxClient, SandboxEhr
from sandbox.ehr_client import SandboxError
from sandbox.fhir_server import RunningFhirServer, start_fhir_server
from sandbox.loader import load_patients
from sandbox.patients import SyntheticPatient, all_patients, days_to_shift
from sandbox.processes import ProcessError, log_tail, port_in_use, start_server, stop_process

log = logging.getLogger(__name__)

CLIENT_ID = "anastrozole-cds-demo"
_MARKDOWN = MarkdownIt("commonmark", {"html": False})
_INDICATOR_COLOUR = {"critical": "#a4001d", "warning": "#8a4b00", "info": "#1f4e96"}


@dataclass(frozen=True)
class DemoUrls:
    product: str  # the CDS service and the SMART app
    ehr: str  # the sandbox EHR: the one URL a newcomer opens
    fhir: str  # the real FHIR server (EHR-internal)

    @property
    def issuer(self) -> str:
        """The CDS client's JWT issuer: the sandbox EHR."""
        return self.ehr

    @property
    def fhir_facade(self) -> str:
        """The FHIR base the SMART app is launched with (iss)."""
        return f"{self.ehr}/fhir"


def product_config(urls: DemoUrls, folder: Path, jwks_file: Path) -> str:
    """The product's TOML settings: trust the sandbox EHR's key, let it name its FHIR server."""
    return (
        f'public_base_url = "{urls.product}"\n'
        f'instance_path = "{folder / "instance"}"\n'
        f"[[issuers]]\n"
        f'iss = "{urls.issuer}"\n'
        f'jwks_file = "{jwks_file}"\n'
        f'fhir_servers = ["{urls.fhir}"]\n'
    )


def product_environment(urls: DemoUrls, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANASTROZOLE_CDS_")}
    env.update(
        {
            "ANASTROZOLE_CDS_CONFIG": str(config),
            "ANASTROZOLE_CDS_SMART_ALLOWED_ISSUERS": orjson.dumps([urls.fhir_facade]).decode(),
            "ANASTROZOLE_CDS_SMART_CLIENT_ID": CLIENT_ID,
            "ANASTROZOLE_CDS_SMART_REDIRECT_URL": f"{urls.product}/smart/callback",
        }
    )
    return env


def create_ehr_app(urls: DemoUrls, signing_key: ECKey, patients: list[SyntheticPatient]) -> Flask:
    """The sandbox EHR: authorization server, a FHIR facade that checks its tokens, and pages
    that show each patient's cards the way an EHR renders a CDS Hooks response."""
    launch_url = f"{urls.product}/launch.html"
    ehr = SandboxEhr(
        urls.ehr,
        clients=[
            SandboxClient(CLIENT_ID, (f"{urls.product}/smart/callback",), launch_urls=(launch_url,))
        ],
        style_url=f"{urls.ehr}{STYLE_PATH}",  # the app takes on the EHR's look
    )
    app = ehr.create_app()
    by_key = {p.key: p for p in patients}
    upstream = requests.Session()

    @app.get("/fhir/<path:path>")
    def fhir(path: str) -> Response:
        """SMART reads: only with a token the sandbox issued, only for its patient."""
        resource_type, _, resource_id = path.partition("/")
        patient_id = resource_id if resource_type == "Patient" else request.args.get("patient")
        if not patient_id:
            abort(403, "the sandbox serves patient-scoped reads only")
        access = ehr.check_access(request, resource_type, patient_id, search=not resource_id)
        if isinstance(access, Response):
            return access
        answer = upstream.get(
            f"{urls.fhir}/{path}", params=list(request.args.items(multi=True)), timeout=20
        )
        body = answer.content.replace(urls.fhir.encode(), urls.fhir_facade.encode())
        return Response(body, status=answer.status_code, mimetype="application/fhir+json")

    @app.get("/")
    def patient_list() -> Response:
        rows = "".join(
            f"<tr><td><a href='/patients/{html.escape(p.key)}'>{html.escape(p.key)}</a></td>"
            f"<td>{html.escape(p.description)}</td>"
            f"<td>{html.escape(', '.join(p.expected_cards) or 'none')}</td></tr>"
            for p in patients
        )
        return _page(
            "Sandbox EHR: demo patients",
            "<p>Synthetic patients, no real people. Open one to see the cards the anastrozole "
            "monitoring service returns on <code>patient-view</code>, and launch the app. The "
            "cards follow the default <code>[cards]</code> policy (the intent card only when the "
            "intent is unclear, monitoring reminders together); the app lists every finding.</p>"
            "<table><thead><tr><th scope='col'>Patient</th><th scope='col'>Scenario</th>"
            f"<th scope='col'>Expected findings</th></tr></thead><tbody>{rows}</tbody></table>",
        )

    @app.get("/patients/<key>")
    def chart(key: str) -> Response:
        patient = by_key.get(key) or abort(404, "no such demo patient")
        try:
            result = run_check(
                CheckRequest(
                    fhir_server=urls.fhir,
                    patient_id=patient.patient_id,
                    service=urls.product,
                    key=signing_key,
                    issuer=urls.issuer,
                )
            )
        except SandboxError as error:
            return _page(patient.key, f"<p role='alert'>{html.escape(str(error))}</p>", 502)
        if result.status != 200:
            message = html.escape(str(result.response.get("message", result.response)))
            return _page(patient.key, f"<p role='alert'>The service said: {message}</p>", 502)
        cards = result.response.get("cards", [])
        launch = f"/ehr/launch?{urlencode({'app': launch_url, 'patient': patient.patient_id})}"
        body = (
            f"<p>{html.escape(patient.description)}</p>"
            f"<p><a class='button' href='{html.escape(launch)}'>Open anastrozole monitoring "
            f"(SMART EHR launch)</a> <a href='/'>All patients</a></p>"
            f"<h2>CDS Hooks cards ({len(cards)})</h2>"
            + "".join(_card(card, patient.patient_id, launch_url) for card in cards)
        )
        return _page(f"{patient.key} ({patient.patient_id})", body)

    return app


def _card(card: dict[str, Any], patient_id: str, launch_url: str) -> str:
    indicator = str(card.get("indicator", "info"))
    colour = _INDICATOR_COLOUR.get(indicator, "#1f4e96")
    links = []
    for link in card.get("links", []):
        if link.get("type") == "smart":
            query = {"app": launch_url, "patient": patient_id}
            if link.get("appContext"):
                query["appContext"] = link["appContext"]
            href = f"/ehr/launch?{urlencode(query)}"
        else:
            href = str(link.get("url", ""))
        links.append(f"<a href='{html.escape(href)}'>{html.escape(str(link.get('label')))}</a>")
    suggestions = "".join(
        f"<li>{html.escape(str(s.get('label')))}</li>" for s in card.get("suggestions", [])
    )
    topic = card.get("source", {}).get("topic", {}).get("code", "")
    return (
        f"<section class='card' style='border-left:6px solid {colour}'>"
        f"<p class='indicator' style='color:{colour}'>{html.escape(indicator.upper())} "
        f"<span class='topic'>{html.escape(str(topic))}</span></p>"
        f"<h3>{html.escape(str(card.get('summary')))}</h3>"
        f"{_MARKDOWN.render(str(card.get('detail', '')))}"
        + (f"<p>Suggestions:</p><ul>{suggestions}</ul>" if suggestions else "")
        + f"<p>{' · '.join(links)}</p></section>"
    )


def _page(title: str, body: str, status: int = 200) -> Response:
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:1rem auto;padding:0 1rem;"
        "color:#1b1b1b}table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid "
        "#ccc;padding:.4rem;text-align:left;vertical-align:top}.card{background:#f7f7f9;"
        "padding:.2rem 1rem;margin:1rem 0}.indicator{font-weight:700;margin:.5rem 0 0}"
        ".topic{font-weight:400;color:#444}.button{background:#1f4e96;color:#fff;padding:.5rem"
        " .8rem;text-decoration:none;border-radius:4px}header{background:#333;color:#fff;"
        "padding:.4rem .8rem;margin-bottom:1rem}</style></head><body>"
        "<header>Sandbox EHR (synthetic data)</header>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return Response(page, status=status, mimetype="text/html")


def require_free_ports(port: int, ehr_port: int) -> None:
    """SandboxError naming the port when the product's or the EHR's is taken: checked before
    anything starts, since another server on the product's port would answer in its place."""
    if port == ehr_port:
        raise SandboxError(f"--port and --ehr-port are both {port}: give two different ports")
    for number, what, option in (
        (port, "the product (CDS Hooks service and SMART app)", "--port"),
        (ehr_port, "the sandbox EHR", "--ehr-port"),
    ):
        if port_in_use(number):
            raise SandboxError(
                f"port {number} on 127.0.0.1 is already in use, so {what} cannot start there: "
                f"stop what listens on it (an earlier demo?) or choose another port with {option}"
            )


def run_demo(*, port: int = 8080, ehr_port: int = 8081, say: Any = print) -> None:
    """Start everything, print the one URL to open, and stop everything on Ctrl-C."""
    require_free_ports(port, ehr_port)
    # SIGTERM (a service manager, `kill`) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    folder = Path(tempfile.mkdtemp(prefix=f"anastrozole-cds-demo-{ehr_port}-"))
    fhir: RunningFhirServer | None = None
    product: subprocess.Popen[bytes] | None = None
    server = None
    try:
        say("starting the sandbox FHIR server (sekmet-fhir) ...")
        fhir = start_fhir_server(folder / "fhir")
        urls = DemoUrls(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ehr_port}", fhir.base_url)
        patients = all_patients()
        say(f"loading {len(patients)} synthetic patients ...")
        loaded = load_patients(fhir.base_url, patients, days=days_to_shift(date.today()))
        failed = [item for item in loaded if item.error]
        if failed:
            raise SandboxError(f"could not load {failed[0].key}: {failed[0].error}")

        key = ECKey.generate_key("P-384", private=True)
        key.ensure_kid()
        jwks_file = folder / "ehr-jwks.json"
        jwks_file.write_bytes(orjson.dumps(KeySet([key]).as_dict(private=False)))
        config = folder / "product.toml"
        config.write_text(product_config(urls, folder, jwks_file))
        say("starting the product (CDS Hooks service and SMART app) ...")
        product_log = folder / "product.log"
        try:
            product = start_server(
                [sys.executable, "-m", "anastrozole_cds.cli", "serve", "--host", "127.0.0.1",
                 "--port", str(port), "--workers", "2"],
                env=product_environment(urls, config),
                log=product_log,
                ready_url=f"{urls.product}/healthz",
                what="the product",
            )  # fmt: skip
        except ProcessError as error:
            raise SandboxError(str(error)) from None

        # Threaded: a browser keeps its connection open while the app calls the EHR back.
        try:
            server = make_server(
                "127.0.0.1", ehr_port, create_ehr_app(urls, key, patients), threaded=True
            )
        except OSError as error:  # taken since require_free_ports looked
            raise SandboxError(
                f"cannot listen on 127.0.0.1:{ehr_port} ({error.strerror}): choose another "
                "port with --ehr-port"
            ) from None
        threading.Thread(target=server.serve_forever, daemon=True).start()
        say(f"\nOpen {urls.ehr}/  (the sandbox EHR; Ctrl-C stops everything)")
        say(f"FHIR server with the demo patients: {urls.fhir}  (for `check --fhir-server`)\n")
        while product.poll() is None:
            time.sleep(0.5)
        # The folder, log included, goes when the demo ends: show the log's end now.
        raise SandboxError(f"the product stopped; the end of its log:\n{log_tail(product_log)}")
    except KeyboardInterrupt:
        say("\nstopping ...")
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave servers behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server is not None:
            server.shutdown()
        if product is not None:
            stop_process(product)
        if fhir is not None:
            fhir.stop()
        shutil.rmtree(folder, ignore_errors=True)
