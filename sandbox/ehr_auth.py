"""A sandbox SMART on FHIR authorization server that plays the EHR, for integrators and tests.

Built on Authlib's authorization-server components, not hand-rolled:
`authlib.integrations.flask_oauth2.AuthorizationServer`, `AuthorizationCodeGrant` with
`CodeChallenge(required=True)` (PKCE), `RefreshTokenGrant`, OpenID Connect's `OpenIDCode`
(the id_token, signed with the sandbox's own key, published at /auth/jwks) and RFC 7523
client assertions for confidential asymmetric clients (private_key_jwt, RS384/ES384).

Everything is in memory. It auto-approves every authorization for one sandbox clinician,
with the launch context the EHR minted (`mint_launch`: patient, encounter, appContext...)
or, for a standalone launch, the configured patient. Codes are single use (a replay revokes
the tokens issued from it), `redirect_uri` must be registered and match, `aud` must be the
FHIR base URL. The token response carries SMART's `patient`, `encounter`,
`need_patient_banner`, `smart_style_url`, `fhirContext` and CDS Hooks' `appContext`; the
style document itself is served at /smart-style.json (`SANDBOX_STYLE`).

    ehr = SandboxEhr("http://127.0.0.1:9000", clients=[SandboxClient("my-app", (redirect,))])
    app = ehr.create_app()                      # or ehr.init_app(existing_flask_app)
    launch = ehr.mint_launch("pt-123", app_context='{"rule": "dexa-due"}')
    # the EHR opens  https://app/launch.html?iss=http://127.0.0.1:9000/fhir&launch=<launch>

`ehr.check_access(request, resource_type, patient_id)` lets a FHIR endpoint require the
bearer tokens it issued, with SMART v1 or v2 scopes.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, InvalidRequestError, TokenMixin, grants
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Blueprint, Flask, Request, Response, abort, jsonify, redirect, request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey
from werkzeug.wrappers import Response as BaseResponse

CLIENT_ASSERTION_ALGORITHMS = ["RS384", "ES384"]
SANDBOX_USER = "sandbox-clinician"
CODE_LIFETIME_SECONDS = 600
LAUNCH_LIFETIME_SECONDS = 3600
STYLE_PATH = "/smart-style.json"
# The sandbox EHR's look (SMART App Launch 2.x style keys): gentle, and AA-readable.
SANDBOX_STYLE = {
    "color_background": "#f4f1ea",
    "color_error": "#a61b1b",
    "color_highlight": "#235a7a",
    "color_modal_backdrop": "",
    "color_success": "#1d6b3a",
    "color_text": "#1f2933",
    "dim_border_radius": "6px",
    "dim_font_size": "15px",
    "dim_spacing_size": "16px",
    "font_family_body": "system-ui, 'Segoe UI', Roboto, Arial, sans-serif",
    "font_family_heading": "system-ui, 'Segoe UI', Roboto, Arial, sans-serif;",
}


@dataclass(frozen=True)
class LaunchContext:
    """What the EHR knows at launch and hands over with the token."""

    patient: str
    encounter: str | None = None
    need_patient_banner: bool = True
    smart_style_url: str | None = None
    fhir_context: tuple[dict[str, Any], ...] = ()
    app_context: str | None = None  # CDS Hooks card link appContext, passed through as is

    def token_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "patient": self.patient,
            "need_patient_banner": self.need_patient_banner,
        }
        if self.encounter:
            fields["encounter"] = self.encounter
        if self.smart_style_url:
            fields["smart_style_url"] = self.smart_style_url
        if self.fhir_context:
            fields["fhirContext"] = list(self.fhir_context)
        if self.app_context is not None:
            fields["appContext"] = self.app_context
        return fields


@dataclass(frozen=True)
class SandboxClient(ClientMixin):  # type: ignore[misc]
    """A registered app: public, or confidential with its public keys (private_key_jwt)."""

    client_id: str
    redirect_uris: tuple[str, ...]
    auth_method: Literal["none", "private_key_jwt"] = "none"
    jwks: dict[str, Any] | None = None
    launch_urls: tuple[str, ...] = ()  # where /ehr/launch may send the browser

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or ""  # the sandbox grants what is asked

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == self.auth_method
        return True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class _AuthorizationCode(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    context: LaunchContext
    user: str
    auth_time: int
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return None


@dataclass
class IssuedToken(TokenMixin):  # type: ignore[misc]
    """An access token (and its refresh token) as the sandbox remembers it."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    client_id: str
    scope: str
    context: LaunchContext
    user: str
    issued_at: float
    expires_in: int
    code: str | None = None
    revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked


def grants_read(scope: str, resource_type: str, *, search: bool) -> bool:
    """Whether SMART scopes (v1 `.read`/`.*`, v2 `.r`/`.rs`/`.cruds`) let a patient-context
    app read or search this resource type."""
    for item in scope.split():
        compartment, _, rest = item.partition("/")
        resource, _, permission = rest.partition(".")
        if compartment not in ("patient", "user") or resource not in (resource_type, "*"):
            continue
        permission = permission.split("?", 1)[0]
        if permission in ("read", "*"):
            return True
        if (
            set(permission) <= set("cruds")
            and "r" in permission
            and (not search or "s" in permission)
        ):
            return True
    return False


class _SmartLaunch:
    """Authlib grant extension: SMART's checks at authorize, its context in the token."""

    def __init__(self, ehr: SandboxEhr) -> None:
        self.ehr = ehr

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.validate)
        grant.register_hook("after_create_token_response", self.add_context)

    def validate(self, grant: Any, *args: Any) -> None:
        data = grant.request.payload.data
        if (data.get("aud") or "").rstrip("/") != self.ehr.fhir_base:
            raise InvalidRequestError("'aud' must be this EHR's FHIR base URL")
        grant.request.smart_context = self.ehr.context_for(data.get("launch"), data.get("scope"))

    def add_context(self, grant: Any, response: Any) -> None:
        _, token, _ = response
        issued = self.ehr.token_record(token.get("access_token"))
        if issued is not None:
            token.update(issued.context.token_fields())


class _AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["none", "private_key_jwt"]

    def save_authorization_code(self, code: str, request: Any) -> None:
        ehr: SandboxEhr = self.server.sandbox
        data = request.payload.data
        ehr.codes[code] = _AuthorizationCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope or "",
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            nonce=data.get("nonce"),
            context=request.smart_context,
            user=SANDBOX_USER,
            auth_time=int(time.time()),
            expires_at=time.time() + CODE_LIFETIME_SECONDS,
        )

    def query_authorization_code(self, code: str, client: ClientMixin) -> _AuthorizationCode | None:
        ehr: SandboxEhr = self.server.sandbox
        if code in ehr.used_codes:  # a replayed code: revoke what it gave (RFC 6749 4.1.2)
            ehr.revoke_from_code(code)
            return None
        found = ehr.codes.get(code)
        if found is None or found.client_id != client.get_client_id():
            return None
        if found.expires_at < time.time():
            return None
        return found

    def delete_authorization_code(self, authorization_code: _AuthorizationCode) -> None:
        ehr: SandboxEhr = self.server.sandbox
        ehr.codes.pop(authorization_code.code, None)
        ehr.used_codes.add(authorization_code.code)

    def authenticate_user(self, authorization_code: _AuthorizationCode) -> str:
        return authorization_code.user


class _RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["none", "private_key_jwt"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: each refresh token is used once

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        ehr: SandboxEhr = self.server.sandbox
        found = ehr.by_refresh.get(refresh_token)
        return found if found is not None and not found.revoked else None

    def authenticate_user(self, refresh_token: IssuedToken) -> str:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: IssuedToken) -> None:
        refresh_token.revoked = True


class _OpenIDCode(OpenIDCode):  # type: ignore[misc]
    def __init__(self, ehr: SandboxEhr) -> None:
        super().__init__(require_nonce=False)
        self.ehr = ehr

    def resolve_client_private_key(self, client: ClientMixin) -> RSAKey:
        return self.ehr.id_token_key

    def get_client_algorithm(self, client: ClientMixin) -> str:
        return "RS256"  # SMART App Launch: id_tokens are RS256 at least

    def get_encode_header(self, client: ClientMixin) -> dict[str, str]:
        return {"alg": "RS256", "kid": self.ehr.id_token_key.kid or "", "typ": "JWT"}

    def get_client_claims(self, client: ClientMixin) -> dict[str, Any]:
        return {"iss": self.ehr.issuer, "aud": client.get_client_id()}

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return any(code.nonce == nonce for code in self.ehr.codes.values())

    def generate_user_info(self, user: str, scope: str) -> UserInfo:
        return UserInfo(sub=user, fhirUser=f"{self.ehr.fhir_base}/Practitioner/{user}")


class _ClientAssertion(JWTBearerClientAssertion):  # type: ignore[misc]
    """private_key_jwt (RFC 7523) with SMART's algorithms and single-use `jti`."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, ehr: SandboxEhr) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.ehr = ehr

    def get_audiences(self) -> list[str]:
        return [self.ehr.token_url]

    def validate_jti(self, claims: Any, jti: str) -> bool:
        return self.ehr.remember_jti(str(claims.get("iss")), jti)

    def resolve_client_public_key(self, client: SandboxClient) -> KeySet:
        return KeySet.import_key_set(client.jwks or {"keys": []})  # type: ignore[arg-type]

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        from authlib.oauth2.rfc6749 import InvalidClientError

        try:
            token = jwt.decode(assertion, resolve_key, algorithms=CLIENT_ASSERTION_ALGORITHMS)
        except JoseError as error:
            raise InvalidClientError(description=error.description) from error
        exp = token.claims.get("exp")
        if not isinstance(exp, int | float) or exp > time.time() + 300 + self.leeway:
            raise InvalidClientError(description="client assertion must expire within 5 minutes")
        self.verify_claims(token.claims)
        return token.claims


class SandboxEhr:
    """The sandbox EHR's authorization side. One per sandbox; thread-safe enough for tests."""

    def __init__(
        self,
        base_url: str,
        *,
        clients: Iterable[SandboxClient],
        fhir_path: str = "/fhir",
        standalone_patient: str | None = None,
        access_token_seconds: int = 3600,
        scopes_version: Literal["v2", "v1"] = "v2",
        style_url: str | None = None,
    ) -> None:
        """`style_url`: the smart_style_url of launches from the launch button and POST
        /auth/launches; the sandbox serves one at `{base_url}/smart-style.json`."""
        self.base_url = base_url.rstrip("/")
        self.fhir_path = fhir_path
        self.fhir_base = f"{self.base_url}{fhir_path}"
        self.issuer = f"{self.base_url}/auth"
        self.token_url = f"{self.issuer}/token"
        self.clients = {client.client_id: client for client in clients}
        self.standalone_patient = standalone_patient
        self.access_token_seconds = access_token_seconds
        self.scopes_version = scopes_version
        self.style_url = style_url
        self.id_token_key = RSAKey.generate_key(2048, private=True)
        self.id_token_key.ensure_kid()
        self.launches: dict[str, tuple[float, LaunchContext]] = {}
        self.codes: dict[str, _AuthorizationCode] = {}
        self.used_codes: set[str] = set()
        self.by_access: dict[str, IssuedToken] = {}
        self.by_refresh: dict[str, IssuedToken] = {}
        self._jtis: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.server = AuthorizationServer()

    # -- the EHR's side of a launch --------------------------------------------------------

    def mint_launch(
        self,
        patient: str,
        *,
        encounter: str | None = None,
        app_context: str | None = None,
        need_patient_banner: bool = True,
        smart_style_url: str | None = None,
        fhir_context: Iterable[dict[str, Any]] = (),
    ) -> str:
        """An opaque `launch` value bound to a patient, as the EHR sends to launch.html."""
        launch = secrets.token_urlsafe(16)
        context = LaunchContext(
            patient,
            encounter,
            need_patient_banner,
            smart_style_url,
            tuple(fhir_context),
            app_context,
        )
        with self._lock:
            self.launches[launch] = (time.time() + LAUNCH_LIFETIME_SECONDS, context)
        return launch

    def context_for(self, launch: str | None, scope: str | None) -> LaunchContext:
        scopes = (scope or "").split()
        if launch:
            with self._lock:
                found = self.launches.get(launch)
            if found is None or found[0] < time.time():
                raise InvalidRequestError("unknown or expired 'launch'")
            return found[1]
        if "launch/patient" in scopes and self.standalone_patient:
            return LaunchContext(self.standalone_patient)
        raise InvalidRequestError("no launch context: send 'launch', or ask for 'launch/patient'")

    # -- tokens ----------------------------------------------------------------------------

    def _save_token(self, token: dict[str, Any], oauth_request: Any) -> None:
        scope = str(token.get("scope") or "")
        code = getattr(oauth_request, "authorization_code", None)
        previous = getattr(oauth_request, "refresh_token", None)
        granted_by = code if code is not None else previous
        if granted_by is None:  # only the two grants registered here issue tokens
            raise RuntimeError("a token without an authorization code or refresh token")
        context = granted_by.context
        if "offline_access" not in scope.split() and "online_access" not in scope.split():
            token.pop("refresh_token", None)  # SMART: refresh tokens only when asked for
        issued = IssuedToken(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            client_id=oauth_request.client.get_client_id(),
            scope=scope,
            context=context,
            user=str(oauth_request.user),
            issued_at=time.time(),
            expires_in=int(token.get("expires_in") or self.access_token_seconds),
            code=code.code if code is not None else (previous.code if previous else None),
        )
        with self._lock:
            self.by_access[issued.access_token] = issued
            if issued.refresh_token:
                self.by_refresh[issued.refresh_token] = issued

    def token_record(self, access_token: str | None) -> IssuedToken | None:
        with self._lock:
            return self.by_access.get(access_token or "")

    def revoke_from_code(self, code: str) -> None:
        with self._lock:
            for issued in self.by_access.values():
                if issued.code == code:
                    issued.revoked = True

    def expire_access_tokens(self) -> None:
        """Make every access token expired now (tests of the app's refresh)."""
        with self._lock:
            for issued in self.by_access.values():
                issued.expires_in = 0

    def remember_jti(self, issuer: str, jti: str) -> bool:
        with self._lock:
            if (issuer, jti) in self._jtis:
                return False
            self._jtis.add((issuer, jti))
            return True

    def check_access(
        self, http_request: Request, resource_type: str, patient_id: str | None, *, search: bool
    ) -> IssuedToken | Response:
        """The token behind a FHIR request, or the 401/403 response to send instead."""
        header = http_request.headers.get("Authorization", "")
        kind, _, value = header.partition(" ")
        issued = self.token_record(value.strip()) if kind.lower() == "bearer" else None
        if issued is None or issued.is_revoked() or issued.is_expired():
            response = jsonify(_outcome("login", "invalid or expired access token"))
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return response
        if not grants_read(issued.scope, resource_type, search=search) or (
            patient_id is not None and patient_id != issued.context.patient
        ):
            response = jsonify(_outcome("forbidden", "the token does not cover this request"))
            response.status_code = 403
            return response
        return issued

    # -- HTTP ------------------------------------------------------------------------------

    def smart_configuration(self) -> dict[str, Any]:
        permission = "permission-v2" if self.scopes_version == "v2" else "permission-v1"
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks",
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": self.token_url,
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": CLIENT_ASSERTION_ALGORITHMS,
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": [
                "openid",
                "fhirUser",
                "launch",
                "launch/patient",
                "offline_access",
                "online_access",
                "patient/*.rs" if self.scopes_version == "v2" else "patient/*.read",
            ],
            "capabilities": [
                "launch-ehr",
                "launch-standalone",
                "client-public",
                "client-confidential-asymmetric",
                "context-passthrough-banner",
                "context-passthrough-style",
                "context-ehr-patient",
                "context-ehr-encounter",
                "context-standalone-patient",
                "sso-openid-connect",
                "permission-offline",
                "permission-patient",
                permission,
            ],
        }

    def init_app(self, app: Flask) -> None:
        app.config.setdefault(
            "OAUTH2_TOKEN_EXPIRES_IN",
            {
                "authorization_code": self.access_token_seconds,
                "refresh_token": self.access_token_seconds,
            },
        )
        app.config.setdefault("OAUTH2_REFRESH_TOKEN_GENERATOR", True)
        self.server.init_app(app, query_client=self.clients.get, save_token=self._save_token)
        self.server.sandbox = self
        smart = _SmartLaunch(self)
        self.server.register_grant(
            _AuthorizationCodeGrant, [CodeChallenge(required=True), _OpenIDCode(self), smart]
        )
        self.server.register_grant(_RefreshTokenGrant, [smart])
        self.server.register_client_auth_method("private_key_jwt", _ClientAssertion(self))
        app.register_blueprint(self._blueprint())

    def create_app(self) -> Flask:
        app = Flask("sandbox_ehr")
        self.init_app(app)
        return app

    def _blueprint(self) -> Blueprint:
        bp = Blueprint("sandbox_ehr", __name__)
        ehr = self

        @bp.get(f"{self.fhir_path}/.well-known/smart-configuration")
        def smart_configuration() -> Response:
            return jsonify(ehr.smart_configuration())

        @bp.get(f"{self.fhir_path}/metadata")
        def capability_statement() -> Response:
            return jsonify(capability_statement_for(ehr))

        @bp.get("/auth/.well-known/openid-configuration")
        def openid_configuration() -> Response:
            config = ehr.smart_configuration()
            return jsonify(
                {
                    key: config[key]
                    for key in ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint")
                }
                | {"id_token_signing_alg_values_supported": ["RS256"]}
            )

        @bp.get("/auth/jwks")
        def jwks() -> Response:
            public = ehr.id_token_key.as_dict(private=False)
            return jsonify({"keys": [{**public, "alg": "RS256", "use": "sig"}]})

        @bp.get("/auth/authorize")
        def authorize() -> Response:
            try:
                grant = ehr.server.get_consent_grant(end_user=SANDBOX_USER)
            except OAuth2Error as error:
                response: Response = ehr.server.handle_error_response(None, error)
                return response
            response = ehr.server.create_authorization_response(
                grant=grant, grant_user=SANDBOX_USER
            )
            return response

        @bp.post("/auth/token")
        def token() -> Response:
            response: Response = ehr.server.create_token_response()
            return response

        @bp.post("/auth/launches")
        def new_launch() -> Response:
            body = request.get_json(silent=True) or {}
            patient = body.get("patient")
            if not isinstance(patient, str) or not patient:
                abort(400, "give a patient id")
            launch = ehr.mint_launch(
                patient,
                encounter=body.get("encounter"),
                app_context=body.get("appContext"),
                need_patient_banner=body.get("need_patient_banner", True) is not False,
                smart_style_url=_text_or(body.get("smart_style_url"), ehr.style_url),
            )
            return jsonify({"launch": launch, "iss": ehr.fhir_base})

        @bp.get(STYLE_PATH)
        def smart_style() -> Response:
            """The style document a launch's smart_style_url may point to."""
            return jsonify(SANDBOX_STYLE)

        @bp.get("/ehr/launch")
        def ehr_launch() -> BaseResponse:
            """Play the EHR's launch button: mint a launch and open the app's launch URL."""
            target = ehr._launch_target()
            return redirect(target, 302)

        @bp.get("/ehr/frame")
        def ehr_frame() -> Response:
            """A minimal EHR page with the app in an iframe, as EHRs embed SMART apps."""
            target = ehr._launch_target()
            html = (
                "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                "<title>Sandbox EHR</title></head><body style='margin:0;font-family:sans-serif'>"
                "<div style='background:#333;color:#fff;padding:6px 10px'>Sandbox EHR</div>"
                f"<iframe title='Anastrozole monitoring' src='{_attr(target)}' "
                "style='border:0;width:1024px;height:1400px'></iframe></body></html>"
            )
            return Response(html, mimetype="text/html")

        return bp

    def _launch_target(self) -> str:
        app_url = request.args.get("app", "")
        allowed = {url for client in self.clients.values() for url in client.launch_urls}
        if app_url not in allowed:
            abort(400, "app is not a registered launch URL")
        launch = self.mint_launch(
            request.args.get("patient") or self.standalone_patient or "",
            app_context=request.args.get("appContext"),
            need_patient_banner=request.args.get("need_patient_banner") != "false",
            smart_style_url=self.style_url,
        )
        return f"{app_url}?{urlencode({'iss': self.fhir_base, 'launch': launch})}"


def capability_statement_for(ehr: SandboxEhr) -> dict[str, Any]:
    """A minimal CapabilityStatement with the SMART oauth-uris (servers older than SMART 2)."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [
                                {"url": "authorize", "valueUri": f"{ehr.issuer}/authorize"},
                                {"url": "token", "valueUri": ehr.token_url},
                            ],
                        }
                    ],
                },
            }
        ],
    }


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


def _text_or(value: Any, default: str | None) -> str | None:
    return value if isinstance(value, str) and value else default


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;")
