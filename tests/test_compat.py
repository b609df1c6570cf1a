"""pyroute.compat: one status for every Traefik field; warnings for the ignored ones the user
sets (``pyroute check`` and ``pyroute run`` at start); docs/compatibility.md generated from it
and never stale; ``pyroute check --compat``."""
import os
import subprocess
import sys
from pathlib import Path

from e2e_support import Pyroute, static_yaml
from pyroute import compat

REPO = Path(__file__).resolve().parent.parent

BACKEND = """\
apiVersion: v1
kind: Service
metadata: {name: app, namespace: default}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: app-1
  namespace: default
  labels: {kubernetes.io/service-name: app}
addressType: IPv4
ports: [{name: http, port: 18099}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
"""

IGNORED = BACKEND + """\
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: shop, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`shop.example`)
      kind: Rule
      observability: {accessLogs: false, tracing: false}
      services:
        - name: app
          port: 80
          passiveHealthCheck: {maxFailedAttempts: 3}
---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: h2, namespace: default}
spec:
  forwardingTimeouts: {readIdleTimeout: 10s}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRouteTCP
metadata: {name: db, namespace: default}
spec:
  entryPoints: [web]
  routes: [{match: "HostSNI(`*`)", services: [{name: app, port: 80}]}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRouteUDP
metadata: {name: dns, namespace: default}
spec:
  routes: [{services: [{name: app, port: 53}]}]
---
apiVersion: traefik.io/v1alpha1
kind: MiddlewareTCP
metadata: {name: allow, namespace: default}
spec:
  ipAllowList: {sourceRange: [10.0.0.0/8]}
---
apiVersion: traefik.io/v1alpha1
kind: ServersTransportTCP
metadata: {name: tcp, namespace: default}
spec:
  dialTimeout: 5s
"""

STATIC_EXTRA = "accessLog: {format: json, dualOutput: true}\n"


def _static(port):
    # log.format and accessLog are applied; accessLog.dualOutput (OTLP) is not
    return static_yaml(port).replace("log: {level: INFO}", "log: {level: INFO, format: json}") \
        + STATIC_EXTRA


def run(*args):
    return subprocess.run([sys.executable, "-m", "pyroute", *args], capture_output=True,
                          text=True, timeout=120, cwd=str(REPO))


def test_docs_page_is_generated_and_current():
    page = REPO / "docs" / "compatibility.md"
    assert page.read_text() == compat.render_markdown(), (
        "docs/compatibility.md is stale: run `python -m pyroute.compat`")


def test_every_schema_field_and_middleware_kind_has_a_status():
    rows = compat.table()
    seen = {(k, f) for k, f, _, _ in rows}
    for kind in compat.KINDS_WITH_SCHEMAS:
        for path in compat.schema_fields(kind):
            st, _, _ = compat.status(kind, path)
            assert st in (compat.SUPPORTED, compat.IGNORED, compat.REFUSED), (kind, path)
    for mw in ("basicAuth", "stripPrefix", "plugin", "rateLimit"):
        assert ("Middleware", "spec." + mw) in seen
    assert ("static", "accessLog") in seen or any(k == "static" for k, _, _, _ in rows)
    # the middleware registry decides a kind's status
    from pyroute import middlewares
    for kind in middlewares.KINDS:
        assert compat.status("Middleware", "spec." + kind)[0] == compat.SUPPORTED


def test_static_keys_table_is_included_when_static_exposes_it(monkeypatch):
    from pyroute import static
    monkeypatch.setattr(static, "STATIC_KEYS", {"metrics.prometheus": ("refused", "no metrics")},
                        raising=False)
    rows = [r for r in compat.table() if r[0] == "static"]
    assert rows == [("static", "metrics.prometheus", "refused", "no metrics")]


def _write(tmp_path, text, static=None):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.yaml").write_text(text)
    args = [str(d)]
    if static is not None:
        (tmp_path / "static.yaml").write_text(static)
        args = ["-c", str(tmp_path / "static.yaml")] + args
    return d, args


def test_check_warns_for_each_ignored_field_and_dropped_kind(tmp_path):
    d, args = _write(tmp_path, IGNORED, _static(18000))
    out = run("check", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    f = os.path.join(str(d), "config.yaml")

    def has(*parts):
        return any(all(p in ln for p in parts) for ln in lines)
    # observability.tracing is done (tests/test_e2e_tracing.py): no warning
    assert not has("spec.routes[0].observability.tracing")
    assert not has("spec.routes[0].observability.accessLogs")
    assert has(f + ":", "IngressRoute default/shop",
               "spec.routes[0].services[0].passiveHealthCheck", "warning:")
    # readIdleTimeout is done for h2c backends (tests/test_e2e_grpc.py): no warning
    assert not has("ServersTransport default/h2", "spec.forwardingTimeouts.readIdleTimeout")
    for kind, name in (("IngressRouteTCP", "db"), ("IngressRouteUDP", "dns"),
                       ("MiddlewareTCP", "allow"), ("ServersTransportTCP", "tcp")):
        assert has(f + ":", "%s default/%s" % (kind, name), "warning:", "dropped"), kind
    static_file = str(tmp_path / "static.yaml")
    assert not has(static_file, "log.format", "warning:")
    assert has(static_file, "accessLog.dualOutput", "warning:")
    assert not has(static_file, "accessLog:", "warning:")


def test_run_warns_at_start_too(tmp_path):
    proxy = Pyroute(tmp_path, IGNORED)
    proxy.static.write_text(_static(proxy.port))
    try:
        proxy.start()
        text = proxy.output()
        assert "passiveHealthCheck" in text and "IngressRouteTCP default/db" in text
        assert "accessLog" in text
    finally:
        proxy.stop()


def test_check_compat_lists_the_fields_the_files_use(tmp_path):
    d, args = _write(tmp_path, IGNORED + """\
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: auth, namespace: default}
spec:
  plugin: {x: {}}
""")
    out = run("check", "--compat", *args)
    compat_lines = [ln for ln in out.stdout.splitlines() if ln.startswith("compat: ")]
    text = "\n".join(compat_lines)
    assert "compat: IngressRoute spec.routes[].match: supported" in text
    assert ("compat: IngressRoute spec.routes[].services[].passiveHealthCheck: ignored"
            in text)
    assert "compat: Middleware spec.plugin: refused" in text
    # and the ignored ones are warnings too
    assert any("warning:" in ln and "passiveHealthCheck" in ln for ln in out.stdout.splitlines())
