"""End to end: real Traefik static configurations (Helm chart flags, YAML, TOML, TRAEFIK_*
variables) start `pyroute run` with warnings only, and the entry point options real
deployments use (redirections, middlewares, tls) answer as Traefik does."""
import json
import os
import socket
import ssl
import subprocess
import sys
import time

import pytest

from e2e_backend import Backend
from e2e_support import REPO, backend_service, free_port, get, request

MANIFESTS = """\
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: ep-prefix, namespace: default}
spec: {addPrefix: {prefix: /ep}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: rt-prefix, namespace: default}
spec: {addPrefix: {prefix: /rt}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: web-app, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.test`)
      kind: Rule
      services: [{name: svc, port: 80}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: secure-app, namespace: default}
spec:
  entryPoints: [websecure]
  routes:
    - match: Host(`a.test`)
      kind: Rule
      middlewares: [{name: rt-prefix}]
      services: [{name: svc, port: 80}]
"""


class Run:
    """`pyroute run` with any arguments and environment; waits for ``port``."""

    def __init__(self, tmp, args, port, env=None):
        self.log = tmp / ("run-%d.log" % port)
        self.logf = open(self.log, "wb")
        e = dict(os.environ)
        e = {k: v for k, v in e.items() if not k.startswith("TRAEFIK_")}
        e["HOME"] = str(tmp)          # no ~/.config/traefik.* of the machine's
        e.update(env or {})
        self.proc = subprocess.Popen([sys.executable, "-m", "pyroute"] + args,
                                     stdout=self.logf, stderr=subprocess.STDOUT, cwd=str(tmp),
                                     env=e)
        self.port = port
        end = time.time() + 30
        while time.time() < end:
            if self.proc.poll() is not None:
                raise AssertionError("pyroute exited: %s" % self.output())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("pyroute did not listen: %s" % self.output())

    def output(self):
        return self.log.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


@pytest.fixture(scope="module")
def backend():
    b = Backend("be")
    yield b


@pytest.fixture
def mdir(tmp_path, backend):
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "config.yaml").write_text(backend_service("svc", [backend.port]) + MANIFESTS)
    return d


def https_get(port, path="/", host="a.test"):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                       % (path, host)).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), body


def warnings_and_errors(output):
    lines = [ln for ln in output.splitlines() if ": warning: " in ln or ": error" in ln]
    return [ln for ln in lines if "warning:" in ln], [ln for ln in lines if "warning:" not in ln]


def test_helm_chart_default_args(tmp_path, mdir, backend):
    ports = {n: free_port() for n in ("metrics", "traefik", "web", "websecure")}
    args = ["run", "-w", "1",
            "--entryPoints.metrics.address=:%d/tcp" % ports["metrics"],
            "--entryPoints.traefik.address=:%d/tcp" % ports["traefik"],
            "--entryPoints.web.address=:%d/tcp" % ports["web"],
            "--entryPoints.websecure.address=:%d/tcp" % ports["websecure"],
            "--api.dashboard=true", "--ping=true", "--metrics.prometheus=true",
            "--metrics.prometheus.entrypoint=metrics", "--providers.kubernetescrd",
            "--providers.kubernetescrd.allowEmptyServices=true",
            "--providers.kubernetesingress", "--entryPoints.websecure.http.tls=true",
            "--log.level=INFO", str(mdir)]
    run = Run(tmp_path, args, ports["websecure"])
    try:
        status, _, body = get(ports["web"], "/x", "a.test")
        assert status == 200 and json.loads(body)["target"] == "/x"
        # websecure's http.tls: its routers are TLS routers (plain HTTP finds none)
        status, body = https_get(ports["websecure"], "/y")
        assert status == 200 and json.loads(body)["target"] == "/rt/y"
        assert get(ports["websecure"], "/y", "a.test")[0] == 404
        out = run.output()
        warns, errors = warnings_and_errors(out)
        assert errors == [], out
        # api, ping and metrics.prometheus are served (docs/api.md, docs/observability.md):
        # no warning for them
        assert not any(": api: warning" in w for w in warns), out
        assert not any(": ping: warning" in w or ": metrics: warning" in w for w in warns), out
        assert any("command line: providers.kubernetesIngress: warning: pyroute ignores this "
                   "key" in w for w in warns), out
        assert "0 error(s)" in out
        # ping@internal on the chart's traefik entry point, prometheus@internal on metrics
        status, _, body = get(ports["traefik"], "/ping", "anything")
        assert (status, body) == (200, b"OK")
        status, _, body = get(ports["metrics"], "/metrics", "anything")
        assert status == 200 and b"traefik_config_reloads_total 1.0" in body
        # Traefik's ping handler answers HEAD too (pkg/ping: GET and HEAD)
        status, _, body = request(ports["traefik"], b"HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\n",
                                  head_request=True)
        assert (status, body) == (200, b"")
        # each internal router lives on its own entry point only; api.dashboard without
        # api.insecure makes no router (the chart adds its own IngressRoute for that)
        assert get(ports["metrics"], "/ping", "anything")[0] == 404
        assert get(ports["traefik"], "/metrics", "anything")[0] == 404
        assert get(ports["traefik"], "/dashboard/", "anything")[0] == 404
        assert get(ports["traefik"], "/api/rawdata", "anything")[0] == 404
    finally:
        run.stop()


PRODUCTION_YAML = """\
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "127.0.0.1:{web}"
    http:
      redirections:
        entryPoint:
          to: websecure
          scheme: https
  websecure:
    address: "127.0.0.1:{websecure}"
    asDefault: true
    transport:
      respondingTimeouts: {{readTimeout: 60s, idleTimeout: 180s}}
      lifeCycle: {{requestAcceptGraceTimeout: 0s, graceTimeOut: 10s}}
    forwardedHeaders:
      trustedIPs: ["10.0.0.0/8"]
    http:
      middlewares: [default-ep-prefix@kubernetescrd]
      tls:
        certResolver: letsencrypt
    http2:
      maxConcurrentStreams: 250
  other:
    address: "127.0.0.1:{other}"
    http:
      redirections:
        entryPoint: {{to: ":443", permanent: false}}
  traefik:
    address: "127.0.0.1:{traefik}"
certificatesResolvers:
  letsencrypt:
    acme:
      email: ops@example.com
      storage: /data/acme.json
      tlsChallenge: {{}}
providers:
  kubernetesCRD:
    allowCrossNamespace: false
    allowExternalNameServices: true
    throttleDuration: 2s
api:
  dashboard: true
ping: {{}}
metrics:
  prometheus:
    addEntryPointsLabels: true
log:
  level: INFO
  format: json
accessLog:
  format: json
  fields:
    headers:
      defaultMode: drop
"""

PRODUCTION_TOML = """\
[global]
  checkNewVersion = false
  sendAnonymousUsage = false

[entryPoints]
  [entryPoints.web]
    address = "127.0.0.1:{web}"
    [entryPoints.web.http.redirections.entryPoint]
      to = "websecure"
      scheme = "https"
  [entryPoints.websecure]
    address = "127.0.0.1:{websecure}"
    asDefault = true
    [entryPoints.websecure.forwardedHeaders]
      trustedIPs = ["10.0.0.0/8"]
    [entryPoints.websecure.http]
      middlewares = ["default-ep-prefix@kubernetescrd"]
      [entryPoints.websecure.http.tls]
        certResolver = "letsencrypt"
  [entryPoints.other]
    address = "127.0.0.1:{other}"
    [entryPoints.other.http.redirections.entryPoint]
      to = ":443"
      permanent = false
  [entryPoints.traefik]
    address = "127.0.0.1:{traefik}"

[certificatesResolvers.letsencrypt.acme]
  email = "ops@example.com"
  storage = "/data/acme.json"
  [certificatesResolvers.letsencrypt.acme.tlsChallenge]

[providers.kubernetesCRD]
  allowExternalNameServices = true
  throttleDuration = "2s"

[api]
  dashboard = true

[ping]

[metrics.prometheus]
  addEntryPointsLabels = true

[log]
  level = "INFO"

[accessLog]
  format = "json"
"""


@pytest.mark.parametrize("name,text", [("traefik.yaml", PRODUCTION_YAML),
                                       ("traefik.toml", PRODUCTION_TOML)])
def test_production_file_starts_with_warnings_only(tmp_path, mdir, name, text):
    ports = {n: free_port() for n in ("web", "websecure", "other", "traefik")}
    cfg = tmp_path / name
    cfg.write_text(text.format(**ports))
    run = Run(tmp_path, ["run", "-c", str(cfg), "-w", "1", str(mdir)], ports["other"])
    try:
        out = run.output()
        warns, errors = warnings_and_errors(out)
        # the certResolver the entry point gives its routers is reported (no ACME), nothing
        # else is an error
        assert all("certResolver" in e or "letsencrypt" in e for e in errors), out
        for key in ("global", "certificatesResolvers"):
            assert any(": %s: warning: pyroute ignores this key" % key in w for w in warns), out
        # ping and metrics.prometheus are served: on the traefik entry point (its routers
        # ping@internal and prometheus@internal)
        assert not any(": ping: warning" in w or ": metrics: warning" in w for w in warns), out
        assert get(ports["traefik"], "/ping", "x")[:3:2] == (200, b"OK")
        assert b"# TYPE traefik_entrypoint_requests_total counter" in get(
            ports["traefik"], "/metrics", "x")[2]
        # http.redirections: Traefik's web-to-websecure router (priority MaxInt-1) answers
        # every request on web, GET with 301 and others with 308, the port of websecure
        status, headers, body = get(ports["web"], "/a/b?c=d", "a.test")
        assert status == 301
        assert headers["location"] == "https://a.test:%d/a/b?c=d" % ports["websecure"]
        assert body == b"Moved Permanently"
        status, headers, _ = request(ports["web"], b"POST /p HTTP/1.1\r\nHost: a.test\r\n"
                                                   b"Content-Length: 0\r\n\r\n")
        assert status == 308
        # an unknown host is redirected too (HostRegexp(`^.+$`))
        assert get(ports["web"], "/", "other.test")[1]["location"] == \
            "https://other.test:%d/" % ports["websecure"]
        # to ":443", permanent false: 302/307 and no port in the Location
        status, headers, _ = get(ports["other"], "/z", "b.test")
        assert (status, headers["location"]) == (302, "https://b.test/z")
        status, _, _ = request(ports["other"], b"PUT /z HTTP/1.1\r\nHost: b.test\r\n"
                                               b"Content-Length: 0\r\n\r\n")
        assert status == 307
        # http.middlewares run before the router's own (addPrefix /ep then /rt -> /rt/ep/y),
        # and http.tls made the router a TLS router
        status, body = https_get(ports["websecure"], "/y")
        assert status == 200 and json.loads(body)["target"] == "/rt/ep/y"
    finally:
        run.stop()


def test_check_dump_shows_traefiks_internal_routers(tmp_path, mdir):
    cfg = tmp_path / "traefik.yaml"
    cfg.write_text(PRODUCTION_YAML.format(web=18001, websecure=18002, other=18003,
                                          traefik=18004))
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "--dump", "-c", str(cfg),
                          str(mdir)], capture_output=True, text=True, cwd=str(REPO))
    http = json.loads(out.stdout)["http"]
    # pyroute check reports what pyroute ignores, one warning per key, with file and line
    assert "%s:1: global: warning: pyroute ignores this key" % cfg in out.stderr
    assert ": ping: warning:" not in out.stderr and ": api: warning:" not in out.stderr
    # Traefik's internal provider: ping@internal and prometheus@internal on traefik
    for name, rule in (("ping@internal", "PathPrefix(`/ping`)"),
                       ("prometheus@internal", "PathPrefix(`/metrics`)")):
        assert http["routers"][name]["rule"] == rule
        assert http["routers"][name]["entryPoints"] == ["traefik"]
        assert http["routers"][name]["priority"] == (1 << 63) - 1
    rt = http["routers"]["web-to-websecure@internal"]
    assert rt["rule"] == "HostRegexp(`^.+$`)" and rt["priority"] == (1 << 63) - 2
    assert rt["middlewares"] == ["redirect-web-to-websecure@internal"]
    assert rt["service"] == "noop@internal" and rt["entryPoints"] == ["web"]
    assert http["middlewares"]["redirect-web-to-websecure@internal"]["redirectScheme"] == {
        "scheme": "https", "port": "18002", "permanent": True}
    assert "other-to-443@internal" in http["routers"]
    secure = [r for n, r in http["routers"].items() if n.startswith("default-secure-app")]
    assert secure[0]["middlewares"] == ["default-ep-prefix@kubernetescrd",
                                        "default-rt-prefix@kubernetescrd"]
    assert secure[0]["tls"] == {"certResolver": "letsencrypt"}


def test_router_on_two_entry_points_is_split_per_model(tmp_path, backend):
    d = tmp_path / "m"
    d.mkdir()
    (d / "c.yaml").write_text(backend_service("svc", [backend.port]) + """\
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: both, namespace: default}
spec:
  routes:
    - match: Host(`a.test`)
      kind: Rule
      services: [{name: svc, port: 80}]
""")
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "--dump",
                          "--entryPoints.web.address=:18011",
                          "--entryPoints.websecure.address=:18012",
                          "--entryPoints.websecure.http.tls=true", str(d)],
                         capture_output=True, text=True, cwd=str(REPO))
    routers = json.loads(out.stdout)["http"]["routers"]
    names = sorted(n for n in routers if n.endswith("@kubernetescrd"))
    # Traefik applyModel: the websecure copy is renamed, the web one keeps its name
    assert len(names) == 2 and names[1].startswith("websecure-default-both-")
    assert routers[names[0]]["entryPoints"] == ["web"] and "tls" not in routers[names[0]]
    assert routers[names[1]]["entryPoints"] == ["websecure"] and routers[names[1]]["tls"] == {}


def test_environment_variables_and_precedence(tmp_path, mdir):
    port, other = free_port(), free_port()
    env = {"TRAEFIK_ENTRYPOINTS_WEB_ADDRESS": "127.0.0.1:%d" % port,
           "TRAEFIK_PROVIDERS_KUBERNETESCRD": "true", "TRAEFIK_PING": "true",
           "TRAEFIK_PING_ENTRYPOINT": "web"}
    run = Run(tmp_path, ["run", "-w", "1", str(mdir)], port, env=env)
    try:
        assert get(port, "/x", "a.test")[0] == 200
        assert "environment: ping: warning" not in run.output()
        assert get(port, "/ping", "a.test")[:3:2] == (200, b"OK")     # TRAEFIK_PING served
    finally:
        run.stop()
    # flags win over the environment, which is then reported as ignored
    run = Run(tmp_path, ["run", "-w", "1", "--entryPoints.web.address=127.0.0.1:%d" % other,
                         str(mdir)], other, env=env)
    try:
        assert get(other, "/x", "a.test")[0] == 200
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        assert "TRAEFIK_* environment variables ignored" in run.output()
    finally:
        run.stop()


def test_unknown_flag_fails_with_suggestion(tmp_path, mdir):
    out = subprocess.run([sys.executable, "-m", "pyroute", "run",
                          "--entryPoints.web.adress=:8000", str(mdir)],
                         capture_output=True, text=True, cwd=str(tmp_path), timeout=60)
    assert out.returncode == 1
    assert "command line: entryPoints.web.adress: unknown key 'adress'" in out.stderr
    assert "did you mean 'address'?" in out.stderr


def test_unknown_key_in_file_names_file_and_line(tmp_path, mdir):
    cfg = tmp_path / "static.yaml"
    cfg.write_text("entryPoints:\n  web:\n    address: ':8000'\nprovider:\n  kubernetesCRD: {}\n")
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c", str(cfg), str(mdir)],
                         capture_output=True, text=True, cwd=str(tmp_path), timeout=60)
    assert out.returncode == 1
    assert "%s:4: provider: unknown key 'provider'" % cfg in out.stderr
    assert "did you mean 'providers'?" in out.stderr


def test_entry_point_http_options_from_flags(tmp_path, backend):
    # asDefault, sanitizePath, encodeQuerySemicolons given as Traefik flags
    d = tmp_path / "m"
    d.mkdir()
    (d / "c.yaml").write_text(backend_service("svc", [backend.port]) + """\
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: anywhere, namespace: default}
spec:
  routes:
    - match: PathPrefix(`/`)
      kind: Rule
      services: [{name: svc, port: 80}]
""")
    raw, enc, other = free_port(), free_port(), free_port()
    run = Run(tmp_path, ["run", "-w", "1",
                         "--entryPoints.raw.address=127.0.0.1:%d" % raw,
                         "--entryPoints.raw.asDefault=true",
                         "--entryPoints.raw.http.sanitizePath=false",
                         "--entryPoints.enc.address=127.0.0.1:%d" % enc,
                         "--entrypoints.enc.asdefault",
                         "--entryPoints.enc.http.encodeQuerySemicolons=true",
                         "--entryPoints.other.address=127.0.0.1:%d" % other, str(d)], other)
    try:
        # a router without entryPoints is on the asDefault ones only
        assert get(other, "/x", "a.test")[0] == 404
        status, _, body = get(raw, "/a/../b//c?x=1;y=2", "a.test")
        # sanitizePath false: the path reaches the backend as sent; the query's ';' becomes
        # '&' (Go's AllowQuerySemicolons, Traefik's default)
        assert status == 200 and json.loads(body)["target"] == "/a/../b//c?x=1&y=2"
        status, _, body = get(enc, "/a/../b?x=1;y=2", "a.test")
        # sanitizePath (default true) cleans the path; encodeQuerySemicolons keeps ';' as %3B
        assert status == 200 and json.loads(body)["target"] == "/b?x=1%3By=2"
    finally:
        run.stop()


def test_entry_point_middleware_cannot_be_bypassed(tmp_path, backend):
    # an ipAllowList put on the entry point guards every router there, those with their own
    # middlewares and those without; a spoofed X-Forwarded-For does not get a client in
    d = tmp_path / "m"
    d.mkdir()
    (d / "c.yaml").write_text(backend_service("svc", [backend.port]) + """\
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: only-ten, namespace: default}
spec: {ipAllowList: {sourceRange: [10.0.0.0/8]}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: hdr, namespace: default}
spec: {headers: {customRequestHeaders: {X-Router: "yes"}}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: apps, namespace: default}
spec:
  routes:
    - match: Host(`plain.test`)
      kind: Rule
      services: [{name: svc, port: 80}]
    - match: Host(`own.test`)
      kind: Rule
      middlewares: [{name: hdr}]
      services: [{name: svc, port: 80}]
      priority: 9223372036854774000
""")
    port, free = free_port(), free_port()
    run = Run(tmp_path, ["run", "-w", "1", "--entryPoints.web.address=127.0.0.1:%d" % port,
                         "--entryPoints.web.http.middlewares=default-only-ten@kubernetescrd",
                         "--entryPoints.free.address=127.0.0.1:%d" % free, str(d)], port)
    try:
        for host in ("plain.test", "own.test", "unknown.test"):
            for extra in ("", "X-Forwarded-For: 10.0.0.1\r\n", "X-Real-Ip: 10.0.0.1\r\n"):
                status = get(port, "/", host, extra)[0]
                assert status == (404 if host == "unknown.test" else 403), (host, extra)
        # the same routers on an entry point without the model are reachable
        assert get(free, "/", "plain.test")[0] == 200
        assert get(free, "/", "own.test")[0] == 200
    finally:
        run.stop()


def test_traefik_style_command_line_without_subcommand(tmp_path, mdir):
    # `pyroute --entryPoints.web.address=... DIR`, as the `traefik` binary is called
    port = free_port()
    run = Run(tmp_path, ["--entryPoints.web.address=127.0.0.1:%d/tcp" % port,
                         "--providers.kubernetescrd", "--log.level", "DEBUG", "-w", "1",
                         str(mdir)], port)
    try:
        assert get(port, "/x", "a.test")[0] == 200
    finally:
        run.stop()


def test_help_explains_the_traefik_flags():
    for argv in (["--help"], ["run", "--help"], ["check", "--help"]):
        out = subprocess.run([sys.executable, "-m", "pyroute"] + argv, capture_output=True,
                             text=True, cwd=str(REPO), timeout=60)
        assert out.returncode == 0
        assert "--entryPoints.web.address=:8000" in out.stdout, argv
    out = subprocess.run([sys.executable, "-m", "pyroute", "run", "--help"],
                         capture_output=True, text=True, cwd=str(REPO), timeout=60).stdout
    assert "TRAEFIK_ENTRYPOINTS_WEB_ADDRESS" in out and "--configFile=FILE" in out


HTTPS_SERVICE = """\
---
apiVersion: v1
kind: Service
metadata: {name: secure, namespace: default}
spec:
  ports: [{name: https, port: 443}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: secure-1
  namespace: default
  labels: {kubernetes.io/service-name: secure}
addressType: IPv4
ports: [{name: https, port: %d}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: secure, namespace: default}
spec:
  routes:
    - match: Host(`s.test`)
      kind: Rule
      services: [{name: secure, port: 443}]
"""


@pytest.mark.parametrize("transport,status", [
    ("", 502),                                        # Go's default: the CA is not trusted
    ("serversTransport: {insecureSkipVerify: true}\n", 200),
    ("serversTransport:\n  rootCAs: [ca.pem]\n", 200),   # a file, relative to the config
    ("serversTransport:\n  rootCAs: [other.pem]\n", 502),
])
def test_static_servers_transport_is_the_default_transport(tmp_path, transport, status):
    trustme = pytest.importorskip("trustme")
    ca, other = trustme.CA(), trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    be = Backend("tls", tls=ctx)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (tmp_path / "other.pem").write_bytes(other.cert_pem.bytes())
    d = tmp_path / "m"
    d.mkdir()
    (d / "c.yaml").write_text(HTTPS_SERVICE % be.port)
    port = free_port()
    cfg = tmp_path / "traefik.yaml"
    cfg.write_text("entryPoints:\n  web: {address: '127.0.0.1:%d'}\n%s" % (port, transport))
    run = Run(tmp_path, ["run", "-w", "1", "-c", str(cfg), str(d)], port)
    try:
        assert get(port, "/x", "s.test")[0] == status, run.output()
        assert "serversTransport: warning" not in run.output()
    finally:
        run.stop()
