"""End to end through ``pyroute run``: the small middleware kinds (encodedCharacters,
passTLSClientCert, contentType) and how a Middleware pyroute cannot run is reported.

One ``pyroute run`` serves every case (plain HTTP and TLS on one entry point that trusts
127.0.0.1; untrusted requests leave from 127.0.0.3). Cases ported from Traefik's tests
(pkg/middlewares/<kind>/*_test.go) are translated to requests and to what the backend
receives or the client gets back."""
import json
import socket
import subprocess
import sys

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, read_response

TRUSTED, UNTRUSTED = "127.0.0.1", "127.0.0.3"


def mw(name, spec):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
            "metadata: {name: %s, namespace: default}\nspec: %s\n" % (name, spec))


def route(name, host, middlewares, tls=None, service="be"):
    out = ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
           "metadata: {name: %s, namespace: default}\nspec:\n  entryPoints: [web]\n"
           "  routes:\n    - match: Host(`%s`)\n      kind: Rule\n"
           "      services: [{name: %s, port: 80}]\n" % (name, host, service))
    if middlewares:
        out += "      middlewares: [%s]\n" % ", ".join("{name: %s}" % m for m in middlewares)
    if tls is not None:
        out += "  tls: %s\n" % tls
    return out


# ---- encodedCharacters (pkg/middlewares/encodedcharacters/encoded_characters_test.go) --------

ENCODED = {                       # option -> the escape Traefik's case sends
    "Slash": "%2f", "BackSlash": "%5c", "NullCharacter": "%00", "Semicolon": "%3b",
    "Percent": "%25", "QuestionMark": "%3f", "Hash": "%23",
}


def encoded_manifests():
    out = mw("ec-none", "{encodedCharacters: {}}") + route("ec-none", "ec-none.test", ["ec-none"])
    for opt in ENCODED:
        name = "ec-" + opt.lower()
        out += mw(name, "{encodedCharacters: {allowEncoded%s: true}}" % opt)
        out += route(name, name + ".test", [name])
    out += route("ec-off", "ec-off.test", [])
    return out


# ---- reporting: kinds pyroute cannot run --------------------------------------------------

UNSUPPORTED = (mw("rr", "{redirectRegex: {regex: \"^/a\", replacement: /b}}")
               + mw("jwt", "{plugin: {jwt: {signingSecret: s}}}")
               + route("uses-rr", "rr.test", ["rr"]) + route("uses-jwt", "jwt.test", ["jwt"]))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mw_small")
    be = Backend("be")
    manifests = backend_service("be", [be.port]) + encoded_manifests() + UNSUPPORTED
    proxy = Pyroute(tmp, manifests, workers=1, trusted=(TRUSTED,))
    proxy.start()
    yield {"port": proxy.port, "be": be, "proxy": proxy, "dir": proxy.mdir,
           "static": proxy.static}
    proxy.stop()
    be.close()


def send(env, raw, source=TRUSTED):
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10,
                                  source_address=(source, 0)) as s:
        s.sendall(raw if isinstance(raw, bytes) else raw.encode("latin-1"))
        status, headers, body, _ = read_response(s)
        return status, headers, body


def get(env, host, path="/", extra="", source=TRUSTED):
    return send(env, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path, host, extra), source)


def test_encoded_characters_denied_by_default_and_allowed_one_by_one(env):
    seen = len(env["be"].received)
    for opt, esc in ENCODED.items():
        path = "/foo%sbar" % esc
        # "deny encoded X": encodedCharacters {} refuses every one of them
        status, headers, body = get(env, "ec-none.test", path)
        assert (status, headers.get("content-length"), body) == (400, "0", b""), (opt, status)
        for esc2 in (esc, esc.upper()):
            # "allow encoded X": only the allowed escape passes, in either case
            status, _, body = get(env, "ec-%s.test" % opt.lower(), "/foo%sbar" % esc2)
            assert status == 200, (opt, esc2, status)
            assert json.loads(body)["target"].lower() == path, (opt, json.loads(body))
        for other, esc3 in ENCODED.items():
            if other != opt:
                assert get(env, "ec-%s.test" % opt.lower(), "/a%sb" % esc3)[0] == 400, (
                    opt, other)
    # every refused request stopped at pyroute: the backend saw only the allowed ones
    assert len(env["be"].received) - seen == 2 * len(ENCODED)
    # a router without the middleware: the entry point's defaults (Traefik v3.7) allow them
    for esc in ENCODED.values():
        assert get(env, "ec-off.test", "/foo%sbar" % esc)[0] == 200, esc
    # Traefik skips a checked escape whole: %252F is "%25" then "2F", refused for the %25
    assert get(env, "ec-slash.test", "/a%252Fb")[0] == 400
    assert get(env, "ec-percent.test", "/a%252fb")[0] == 200
    assert get(env, "ec-none.test", "/plain/path")[0] == 200


def test_unsupported_kinds_disable_their_routers_and_are_reported(env):
    out = env["proxy"].output()
    cfg = str(env["dir"] / "config.yaml")
    # the start-up log names the Middleware's file, line, object and field
    assert ("%s:" % cfg) in out
    assert ("Middleware default/rr: spec.redirectRegex: middleware kind 'redirectRegex' is "
            "not supported by pyroute yet") in out
    assert ("Middleware default/jwt: spec.plugin.jwt: plugin: unknown plugin type: jwt") in out
    # their routers are not served (404: no router), the others are
    assert get(env, "rr.test", "/a")[0] == 404
    assert get(env, "jwt.test")[0] == 404
    assert get(env, "ec-off.test")[0] == 200
    # pyroute check says the same, and --dump shows the Middlewares disabled
    cmd = [sys.executable, "-m", "pyroute", "check", "-c", str(env["static"]), str(env["dir"])]
    chk = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert chk.returncode == 1
    lines = chk.stdout.splitlines()
    assert any(ln.startswith(cfg + ":") and ln.endswith(
        "Middleware default/rr: spec.redirectRegex: middleware kind 'redirectRegex' is not "
        "supported by pyroute yet") for ln in lines), lines
    assert any(ln.startswith(cfg + ":") and "Middleware default/jwt: spec.plugin.jwt: plugin: "
               "unknown plugin type: jwt (jwt is Traefik Hub's JWT Authentication middleware"
               in ln for ln in lines), lines
    assert any("IngressRoute default/uses-rr: spec.routes[0].middlewares[0]: middleware "
               "'default-rr@kubernetescrd' is disabled" in ln for ln in lines), lines
    dump = json.loads(subprocess.run(cmd + ["--dump"], capture_output=True, text=True,
                                     timeout=120).stdout)
    mws = dump["http"]["middlewares"]
    for name in ("default-rr@kubernetescrd", "default-jwt@kubernetescrd"):
        assert mws[name]["status"] == "disabled" and mws[name]["error"], mws[name]
    assert mws["default-rr@kubernetescrd"]["redirectRegex"] == {"regex": "^/a",
                                                                 "replacement": "/b"}
    assert mws["default-ec-none@kubernetescrd"]["status"] == "enabled"
    uses = [r for k, r in dump["http"]["routers"].items() if k.startswith("default-uses-")]
    assert len(uses) == 2 and all(r["status"] == "disabled" for r in uses), uses
