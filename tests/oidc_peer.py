"""A TEST PEER, not a provider: a small OpenID Connect provider plus GitHub-shaped and
GitLab-shaped OAuth 2 servers on one free loopback port, served by werkzeug in a thread,
for the single sign-on tests (tests/integration/test_oidc.py, test_oauth.py).

It speaks just enough of each protocol for the appliance's real client code (authlib) to
run unchanged against it: discovery, an authorize endpoint that consents at once for the
configured person (or refuses, when told to), a token endpoint that checks the client's
credentials, the redirect URI and PKCE (S256, with authlib's own ``create_s256_code_challenge``),
RS256 ID tokens signed with a key made here (joserfc, the JOSE library authlib's client
uses), JWKS, userinfo, GitHub's ``/user`` + ``/user/emails`` and GitLab's ``/api/v4/user``.

Knobs for the failure tests: ``id_token_claims`` overrides claims of the next ID tokens
(nonce, exp, aud, iss), ``sign_with_foreign_key`` signs them with a key the JWKS does not
hold, ``deny`` answers the authorize request with ``access_denied``.
"""

from __future__ import annotations

import secrets
import threading
import time
from urllib.parse import urlencode

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import Flask, abort, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

KEY_ID = "peer-key-1"


class ProviderPeer:
    def __init__(self, client_id: str = "prts-test", client_secret: str | None = None):
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(16)
        self.key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID})
        self.oidc_user = {"sub": "oidc-subject-1", "preferred_username": "alice", "email": "alice@example.test",
                          "email_verified": True, "name": "Alice Liddell"}
        self.github_user = {"id": 583231, "login": "octocat", "name": "The Octocat"}
        self.github_emails = [{"email": "octo@example.test", "primary": True, "verified": True},
                              {"email": "other@example.test", "primary": False, "verified": True}]
        self.gitlab_user = {"id": 42, "username": "tanuki", "name": "Tanuki", "email": "tanuki@example.test",
                            "confirmed_at": "2024-01-01T00:00:00Z"}
        self.id_token_claims: dict = {}
        self.sign_with_foreign_key = False
        self.deny = False
        self.authorize_requests: list[dict] = []
        self.token_requests: list[dict] = []
        self._codes: dict[str, dict] = {}
        self._tokens: dict[str, str] = {}  # access token -> "oidc" | "github" | "gitlab"
        self._server = make_server("127.0.0.1", 0, self._app(), threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-peer", daemon=True)

    def __enter__(self) -> "ProviderPeer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._thread.join(10)
        self._server.server_close()

    # -- the endpoints ----------------------------------------------------------------------

    def _app(self) -> Flask:
        app = Flask("oidc_peer")
        app.add_url_rule("/.well-known/openid-configuration", "discovery", self._discovery)
        for kind, path in (("oidc", "/oidc/authorize"), ("github", "/login/oauth/authorize"), ("gitlab", "/oauth/authorize")):
            app.add_url_rule(path, f"authorize_{kind}", lambda kind=kind: self._authorize(kind))
        for kind, path in (("oidc", "/oidc/token"), ("github", "/login/oauth/access_token"), ("gitlab", "/oauth/token")):
            app.add_url_rule(path, f"token_{kind}", lambda kind=kind: self._token(kind), methods=["POST"])
        app.add_url_rule("/oidc/jwks", "jwks", lambda: jsonify(KeySet([self.key]).as_dict(private=False)))
        app.add_url_rule("/oidc/userinfo", "userinfo", lambda: jsonify(self._bearer("oidc") and self.oidc_user))
        app.add_url_rule("/user", "github_user", lambda: jsonify(self._bearer("github") and self.github_user))
        app.add_url_rule("/user/emails", "github_emails", lambda: jsonify(self._bearer("github") and self.github_emails))
        app.add_url_rule("/api/v4/user", "gitlab_user", lambda: jsonify(self._bearer("gitlab") and self.gitlab_user))
        return app

    def _discovery(self):
        return jsonify({
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/oidc/authorize",
            "token_endpoint": f"{self.url}/oidc/token",
            "jwks_uri": f"{self.url}/oidc/jwks",
            "userinfo_endpoint": f"{self.url}/oidc/userinfo",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        })

    def _authorize(self, kind: str):
        args = request.args.to_dict()
        self.authorize_requests.append({"kind": kind, **args})
        if args.get("client_id") != self.client_id or args.get("response_type") != "code" or not args.get("redirect_uri"):
            abort(400)
        separator = "&" if "?" in args["redirect_uri"] else "?"
        if self.deny:
            return redirect(args["redirect_uri"] + separator + urlencode(
                {"error": "access_denied", "error_description": "The user said no", "state": args.get("state", "")}))
        code = secrets.token_urlsafe(16)
        self._codes[code] = {"kind": kind, "redirect_uri": args["redirect_uri"], "nonce": args.get("nonce"),
                             "challenge": args.get("code_challenge"), "method": args.get("code_challenge_method")}
        return redirect(args["redirect_uri"] + separator + urlencode({"code": code, "state": args.get("state", "")}))

    def _token(self, kind: str):
        form = request.form.to_dict()
        self.token_requests.append({"kind": kind, **form})
        auth = request.authorization
        client_id, secret = (auth.username, auth.password) if auth else (form.get("client_id"), form.get("client_secret"))
        if (client_id, secret) != (self.client_id, self.client_secret):
            return jsonify(error="invalid_client"), 401
        grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or grant["kind"] != kind or form.get("grant_type") != "authorization_code" \
                or form.get("redirect_uri") != grant["redirect_uri"]:
            return jsonify(error="invalid_grant"), 400
        if grant["challenge"] is not None:
            verifier = form.get("code_verifier") or ""
            if grant["method"] != "S256" or create_s256_code_challenge(verifier) != grant["challenge"]:
                return jsonify(error="invalid_grant", error_description="PKCE verification failed"), 400
        access_token = secrets.token_urlsafe(24)
        self._tokens[access_token] = kind
        answer = {"access_token": access_token, "token_type": "Bearer", "expires_in": 3600}
        if kind == "oidc":
            answer["id_token"] = self._id_token(grant["nonce"])
        return jsonify(answer)

    def _id_token(self, nonce: str | None) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "sub": self.oidc_user["sub"], "aud": self.client_id, "iat": now, "exp": now + 300,
                  "nonce": nonce, **{k: v for k, v in self.oidc_user.items() if k != "sub"}}
        claims.update(self.id_token_claims)
        key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID}) if self.sign_with_foreign_key else self.key
        return jwt.encode({"alg": "RS256", "kid": KEY_ID}, claims, key)

    def _bearer(self, kind: str) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "token") or self._tokens.get(token) != kind:
            abort(401)
        return True
