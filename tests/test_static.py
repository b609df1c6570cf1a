"""The static configuration: Traefik's shape, defaults, and errors naming the key."""
import pytest

from pyroute.errors import ConfigError
from pyroute.static import load_static, parse_duration


def write(tmp_path, text):
    p = tmp_path / "static.yaml"
    p.write_text(text)
    return str(p)


def test_defaults():
    st = load_static(None)
    (ep,) = st.entry_points.values()
    assert (ep.name, ep.host, ep.port) == ("web", "127.0.0.1", 8000)
    assert (ep.read_timeout, ep.write_timeout, ep.idle_timeout) == (60.0, 0.0, 180.0)
    assert (ep.request_accept_grace_timeout, ep.grace_timeout) == (0.0, 10.0)
    assert (ep.keep_alive_max_requests, ep.keep_alive_max_time) == (0, 0.0)   # no limit
    assert ep.sanitize_path is True and ep.encode_query_semicolons is False
    assert ep.max_header_bytes == 1 << 20
    # Traefik >= v3.6.7: every encoded character allowed by default (v3.6.4's refusal of
    # / \\ NUL ; ? # broke real applications); the hardening is opt-in
    assert ep.denied_encoded_characters == frozenset()
    assert st.default_entry_points() == ["web"]
    assert st.providers_crd.allow_cross_namespace is False


def test_full_file(tmp_path):
    path = write(tmp_path, """\
entryPoints:
  web:
    address: ":8080"
  websecure:
    address: "[::1]:8443/tcp"
    asDefault: true
    transport:
      respondingTimeouts: {readTimeout: 1m30s, writeTimeout: 5, idleTimeout: 500ms}
      lifeCycle: {requestAcceptGraceTimeout: 2s, graceTimeOut: 1h}
      keepAliveMaxRequests: 100
      keepAliveMaxTime: 2m
    forwardedHeaders: {trustedIPs: ["10.0.0.0/8", "fd00::/8"], insecure: false}
    http:
      sanitizePath: false
      encodeQuerySemicolons: true
      maxHeaderBytes: 8192
      encodedCharacters: {allowEncodedSlash: false, allowEncodedHash: false,
                          allowEncodedBackSlash: true, allowEncodedNullCharacter: true,
                          allowEncodedSemicolon: true, allowEncodedQuestionMark: true,
                          allowEncodedPercent: false}
providers:
  kubernetesCRD:
    allowCrossNamespace: true
    allowExternalNameServices: true
    allowEmptyServices: true
    nativeLBByDefault: true
    namespaces: [a, b]
    labelSelector: "app=web,tier!=db"
    ingressClass: internal
    paths: [manifests]
log: {level: debug, format: json}
accessLog: {filePath: /tmp/access.log}
""")
    st = load_static(path)
    web, sec = st.entry_points["web"], st.entry_points["websecure"]
    assert (web.host, web.port, web.address) == ("", 8080, ":8080")
    assert (sec.host, sec.port, sec.address) == ("::1", 8443, "[::1]:8443")
    assert (sec.read_timeout, sec.write_timeout, sec.idle_timeout) == (90.0, 5.0, 0.5)
    assert (sec.request_accept_grace_timeout, sec.grace_timeout) == (2.0, 3600.0)
    assert (sec.keep_alive_max_requests, sec.keep_alive_max_time) == (100, 120.0)
    assert sec.trusted_ips == ("10.0.0.0/8", "fd00::/8")
    assert (sec.sanitize_path, sec.encode_query_semicolons, sec.max_header_bytes) == \
        (False, True, 8192)
    assert sec.denied_encoded_characters == frozenset({"%2F", "%2f", "%23", "%25"})
    assert st.default_entry_points() == ["websecure"]
    crd = st.providers_crd
    assert crd.allow_cross_namespace and crd.allow_external_name_services
    assert crd.allow_empty_services and crd.native_lb_by_default
    assert crd.namespaces == ("a", "b") and crd.ingress_class == "internal"
    assert crd.paths == (str(tmp_path / "manifests"),)
    assert (st.log.level, st.log.format) == ("DEBUG", "json")
    assert st.access_log.enabled and st.access_log.file_path == "/tmp/access.log"


@pytest.mark.parametrize("text,field,message", [
    ("entryPoints:\n  web:\n    adress: ':80'\n", "entryPoints.web.adress", "unknown key 'adress'"),
    ("entryPoint: {}\n", "entryPoint", "did you mean 'entryPoints'?"),
    ("entryPoints:\n  web: {address: ':80', http: {sanitizePath: maybe}}\n",
     "entryPoints.web.http.sanitizePath", "expected true or false"),
    ("entryPoints:\n  web: {address: ':99999'}\n", "entryPoints.web.address", "out of range"),
    ("entryPoints:\n  web: {address: ':80/sctp'}\n", "entryPoints.web.address",
     "invalid protocol"),
    ("entryPoints:\n  web: {address: 'nope'}\n", "entryPoints.web.address", "invalid address"),
    ("entryPoints:\n  web:\n    address: ':80'\n    transport:\n      respondingTimeouts:\n"
     "        readTimeout: 10x\n", "entryPoints.web.transport.respondingTimeouts.readTimeout",
     "invalid duration"),
    ("entryPoints:\n  web:\n    address: ':80'\n    transport: {keepAliveMaxRequests: -1}\n",
     "entryPoints.web.transport.keepAliveMaxRequests", "non-negative integer"),
    ("entryPoints:\n  web:\n    address: ':80'\n    transport: {keepAliveMaxTime: soon}\n",
     "entryPoints.web.transport.keepAliveMaxTime", "invalid duration"),
    ("entryPoints:\n  web:\n    address: ':80'\n    transport: {keepAliveMaxReqs: 3}\n",
     "entryPoints.web.transport.keepAliveMaxReqs", "unknown key"),
    ("entryPoints:\n  web:\n    address: ':80'\n    forwardedHeaders: {trustedIPs: [10.0.0/99]}\n",
     "entryPoints.web.forwardedHeaders.trustedIPs[0]", "invalid IP or CIDR"),
    ("entryPoints:\n  a: {address: ':80'}\n  b: {address: ':80'}\n", "entryPoints.b.address",
     "same address as entry point 'a'"),
    ("providers:\n  kubernetesCRD: {labelSelector: 'a in (b'}\n",
     "providers.kubernetesCRD.labelSelector", "invalid label selector"),
    ("providers:\n  kubernetesCRDs: {}\n", "providers.kubernetesCRDs",
     "did you mean 'kubernetesCRD'?"),
])
def test_errors_name_file_and_key(tmp_path, text, field, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_static(path)
    assert info.value.file == path
    assert info.value.field == field
    assert message in info.value.message


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_static(str(tmp_path / "missing.yaml"))
    path = write(tmp_path, "entryPoints: [\n")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_static(path)
    assert info.value.line == 2


@pytest.mark.parametrize("value,seconds", [
    (60, 60.0), ("60", 60.0), ("60s", 60.0), ("1m30s", 90.0), ("1.5h", 5400.0),
    ("100ms", 0.1), ("250us", 0.00025), ("0", 0.0), ("2h45m", 9900.0)])
def test_durations(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["10x", "s", "-5s", True, "1m-3s", ""])
def test_bad_durations(value):
    if value == "":
        assert parse_duration(value) == 0.0
        return
    with pytest.raises(ValueError):
        parse_duration(value)


# --- every Traefik v3.7 key is known; what pyroute ignores is a warning ------------------------

from pyroute.static import STATIC_KEYS, parse_flags  # noqa: E402


def test_static_keys_cover_traefik():
    for key in ["global.checkNewVersion", "global.sendAnonymousUsage", "api.dashboard",
                "api.insecure", "ping.entryPoint", "metrics.prometheus.entryPoint",
                "metrics.datadog.address", "metrics.statsD.prefix",
                "metrics.influxDB2.additionalLabels", "metrics.otlp.grpc.endpoint",
                "tracing.otlp.http.endpoint", "log.maxBackups", "accessLog.fields.names.<name>",
                "providers.kubernetesIngress.ingressClass", "providers.docker.network",
                "providers.file.directory", "providers.kubernetesGateway.experimentalChannel",
                "providers.kubernetesCRD.disableClusterScopeResources",
                "certificatesResolvers.<name>.acme.email",
                "certificatesResolvers.<name>.acme.dnsChallenge.provider",
                "experimental.plugins.<name>.moduleName", "core.defaultRuleSyntax",
                "hostResolver.cnameFlattening", "serversTransport.insecureSkipVerify",
                "tcpServersTransport.dialTimeout", "spiffe.workloadAPIAddr",
                "ocsp.responderOverrides", "entryPoints.<name>.http.tls.certResolver",
                "entryPoints.<name>.http.tls.domains[n].main",
                "entryPoints.<name>.http.redirections.entryPoint.priority",
                "entryPoints.<name>.http2.maxConcurrentStreams",
                "entryPoints.<name>.proxyProtocol.trustedIPs"]:
        assert key in STATIC_KEYS, key
    assert len(STATIC_KEYS) > 550
    assert {s for s, _ in STATIC_KEYS.values()} <= {"supported", "ignored", "refused"}
    for key in ["entryPoints.<name>.address", "entryPoints.<name>.http.middlewares",
                "entryPoints.<name>.http.redirections.entryPoint.to",
                "entryPoints.<name>.http.tls", "entryPoints.<name>.proxyProtocol.insecure",
                "entryPoints.<name>.http.maxHeaderBytes",
                "entryPoints.<name>.transport.lifeCycle.requestAcceptGraceTimeout",
                "providers.kubernetesCRD.namespaces", "providers.kubernetesCRD.throttleDuration"]:
        assert STATIC_KEYS[key][0] == "supported", key
    for key in ["api", "api.insecure", "api.dashboard", "api.basePath"]:
        assert STATIC_KEYS[key][0] == "supported", key          # pyroute.api (issue 15)
    for key in ["ping", "ping.entryPoint", "ping.manualRouting", "ping.terminatingStatusCode",
                "metrics.prometheus", "metrics.prometheus.buckets",
                "metrics.prometheus.headerLabels", "metrics.addInternals", "metrics.otlp",
                "metrics.otlp.grpc.endpoint", "entryPoints.<name>.observability.metrics"]:
        assert STATIC_KEYS[key][0] == "supported", key          # issue 14
    for key in ["api.debug", "metrics.datadog", "providers.kubernetesIngress",
                "providers.kubernetesCRD.endpoint", "providers.kubernetesCRD.token",
                "providers.kubernetesCRD.certAuthFilePath", "certificatesResolvers.<name>"]:
        assert STATIC_KEYS[key][0] == "ignored" and STATIC_KEYS[key][1], key


def test_ignored_keys_warn_once_each(tmp_path):
    path = write(tmp_path, """\
global: {checkNewVersion: false}
api: {dashboard: true, insecure: false}
ping: {}
metrics:
  prometheus: {entryPoint: metrics, addRoutersLabels: true}
entryPoints:
  web: {address: ":8000", http2: {maxConcurrentStreams: 100}}
  websecure: {address: ":8443", http2: {enabled: false, maxConcurrentStreams: 100}}
providers:
  kubernetesCRD: {endpoint: "https://k8s", token: x, throttleDuration: 2s,
                  disableClusterScopeResources: true, namespaces: [a]}
  kubernetesIngress: {}
""")
    st = load_static(path)
    got = [(w.field, w.line, w.severity) for w in st.warnings]
    # api is served (pyroute.api, issue 15): no warning for it
    # nor for ping and metrics.prometheus (issue 14), whose entry point "metrics" is missing
    # HTTP/2 is served by default (web's setting applies, no warning); the pyroute opt-out
    # http2.enabled: false is said to be an extension, and the settings beside it do nothing
    assert got == [("global", 1, "warning"),
                   ("providers.kubernetesCRD.endpoint", 10, "warning"),
                   ("providers.kubernetesCRD.token", 10, "warning"),
                   ("providers.kubernetesIngress", 12, "warning"),
                   ("entryPoints.websecure.http2.enabled", 8, "warning"),
                   ("entryPoints.websecure.http2", 8, "warning"),
                   ("metrics.prometheus.entryPoint", 5, "warning")]
    assert st.warnings[-1].message == ("entry point 'metrics' does not exist: "
                                      "metrics.prometheus is not served")
    assert "a pyroute extension" in st.warnings[4].message
    assert all("pyroute ignores this key" in w.message for w in st.warnings if
               w.field not in ("metrics.prometheus.entryPoint",
                               "entryPoints.websecure.http2.enabled"))
    assert st.entry_points["web"].http2 and st.entry_points["web"].h2_max_streams == 100
    assert not st.entry_points["websecure"].http2
    assert all(w.file == path for w in st.warnings)
    crd = st.providers_crd
    assert crd.throttle_duration == 2.0 and crd.disable_cluster_scope_resources is True
    assert crd.namespaces == ("a",)


def test_unknown_key_suggests_closest_with_line(tmp_path):
    path = write(tmp_path, "entryPoints:\n  web:\n    address: ':80'\n    http:\n"
                           "      redirections:\n        entrypoint:\n          too: websecure\n")
    with pytest.raises(ConfigError) as info:
        load_static(path)
    e = info.value
    assert (e.file, e.line) == (path, 7)
    assert e.field == "entryPoints.web.http.redirections.entryPoint.too"
    assert "did you mean 'to'?" in e.message


def test_keys_are_case_insensitive_as_paerser(tmp_path):
    path = write(tmp_path, "ENTRYPOINTS:\n  Web:\n    ADDRESS: ':8081'\n    asdefault: 'true'\n"
                           "LOG: {Level: debug}\n")
    st = load_static(path)
    assert list(st.entry_points) == ["Web"]          # map names keep their spelling
    ep = st.entry_points["Web"]
    assert ep.port == 8081 and ep.as_default is True and st.log.level == "DEBUG"


def test_invalid_log_level_falls_back_to_error_as_traefik(tmp_path):
    st = load_static(write(tmp_path, "log: {level: loud}\n"))
    assert st.log.level == "ERROR"
    assert [w.field for w in st.warnings] == ["log.level"]


def test_udp_entry_point_is_a_warning_not_a_failure(tmp_path):
    st = load_static(write(tmp_path, "entryPoints:\n  web: {address: ':8000'}\n"
                                     "  dns: {address: ':5353/udp', udp: {timeout: 3s}}\n"))
    assert list(st.entry_points) == ["web"]
    assert any(w.field == "entryPoints.dns.address" and "UDP" in w.message
               for w in st.warnings)


def test_entry_point_options_parsed(tmp_path):
    st = load_static(write(tmp_path, """\
entryPoints:
  web:
    address: ":8000"
    http:
      redirections:
        entryPoint: {to: websecure}
  websecure:
    address: ":8443"
    proxyProtocol: {trustedIPs: ["10.0.0.0/8"]}
    transport: {lifeCycle: {requestAcceptGraceTimeout: 5s}}
    http:
      middlewares: [default-compress@kubernetescrd, auth]
      tls:
        options: default-modern@kubernetescrd
        certResolver: le
        domains: [{main: example.com, sans: [www.example.com]}]
  other:
    address: ":9000"
    http:
      redirections:
        entryPoint: {to: ":443", scheme: https, permanent: false, priority: 10}
"""))
    web, sec, other = (st.entry_points[n] for n in ("web", "websecure", "other"))
    assert web.redirections == {"to": "websecure", "scheme": "https", "permanent": True,
                                "priority": (1 << 63) - 2, "port": "8443"}
    assert other.redirections["port"] == "443" and other.redirections["permanent"] is False
    assert other.redirections["priority"] == 10
    assert sec.proxy_protocol == {"trusted_ips": ["10.0.0.0/8"], "insecure": False}
    assert web.proxy_protocol is None
    assert sec.request_accept_grace_timeout == 5.0
    assert sec.max_header_bytes == 1 << 20
    assert sec.middlewares == ("default-compress@kubernetescrd", "auth")
    assert sec.tls == {"options": "default-modern@kubernetescrd", "certResolver": "le",
                       "domains": [{"main": "example.com", "sans": ["www.example.com"]}]}
    assert sec.has_model and not web.has_model


def test_redirection_to_unknown_entry_point_is_a_warning(tmp_path):
    st = load_static(write(tmp_path, "entryPoints:\n  web:\n    address: ':8000'\n    http:\n"
                                     "      redirections: {entryPoint: {to: nowhere}}\n"))
    assert st.entry_points["web"].redirections is None
    assert any("non-existing entry point: nowhere" in w.message for w in st.warnings)


def test_toml_file_with_lines(tmp_path):
    p = tmp_path / "traefik.toml"
    p.write_text("""\
[global]
  checkNewVersion = false

[entryPoints]
  [entryPoints.web]
    address = ":8000"
    [entryPoints.web.http.redirections.entryPoint]
      to = "websecure"
  [entryPoints.websecure]
    address = ":8443"
    [entryPoints.websecure.http.tls]

[providers.kubernetesCRD]
  allowCrossNamespace = true

[ping]
""")
    st = load_static(str(p))
    assert st.entry_points["web"].redirections["port"] == "8443"
    assert st.entry_points["websecure"].tls == {}
    assert st.providers_crd.allow_cross_namespace is True
    assert [(w.field, w.line) for w in st.warnings] == [("global", 1)]
    assert st.ping is not None and st.entry_points["traefik"].port == 8080   # the workers'
    p.write_text("[entryPoints.web]\n  address = \":8000\"\n  adress = \":1\"\n")
    with pytest.raises(ConfigError) as info:
        load_static(str(p))
    assert (info.value.line, info.value.field) == (3, "entryPoints.web.adress")
    assert "did you mean 'address'?" in info.value.message


# --- flags and environment variables, as Traefik (paerser) reads them ------------------------

HELM_ARGS = ("--entryPoints.metrics.address=:9100/tcp --entryPoints.traefik.address=:8080/tcp "
             "--entryPoints.web.address=:8000/tcp --entryPoints.websecure.address=:8443/tcp "
             "--api.dashboard=true --ping=true --metrics.prometheus=true "
             "--metrics.prometheus.entrypoint=metrics --providers.kubernetescrd "
             "--providers.kubernetescrd.allowEmptyServices=true --providers.kubernetesingress "
             "--entryPoints.websecure.http.tls=true --log.level=INFO").split()


def test_helm_chart_default_args():
    st = load_static(None, args=HELM_ARGS)
    assert st.origin == "flags"
    assert {n: ep.port for n, ep in st.entry_points.items()} == {
        "metrics": 9100, "traefik": 8080, "web": 8000, "websecure": 8443}
    assert st.entry_points["websecure"].tls == {} and st.entry_points["web"].tls is None
    assert st.providers_crd.allow_empty_services is True
    assert [w.field for w in st.warnings] == ["providers.kubernetesIngress"]
    # the chart exposes the dashboard with an IngressRoute to api@internal, no api.insecure:
    # entryPoints.traefik stays one of the workers' (ping@internal is routed on it), and
    # prometheus@internal on the chart's metrics entry point
    assert st.api is not None and not st.api.insecure and st.api.dashboard
    assert "traefik" in st.entry_points
    assert st.ping.entry_point == "traefik" and st.metrics.prometheus.entry_point == "metrics"
    assert all(w.file == "command line" for w in st.warnings)


def test_flag_forms():
    assert parse_flags(["--log.level", "DEBUG", "--ping", "-api.insecure",
                        "--entryPoints.web.forwardedHeaders.trustedIPs=10.0.0.0/8",
                        "--entrypoints.web.forwardedheaders.trustedips=fd00::/8"]) == [
        ("log.level", "DEBUG"), ("ping", "true"), ("api.insecure", "true"),
        ("entryPoints.web.forwardedHeaders.trustedIPs", "10.0.0.0/8,fd00::/8")]
    st = load_static(None, args=[
        "--ENTRYPOINTS.web.ADDRESS=127.0.0.1:8001", "--entrypoints.web.http.sanitizepath=false",
        "--entryPoints.web.http.tls.domains[0].main=example.com",
        "--entryPoints.web.http.tls.domains[0].sans=a.example.com,b.example.com",
        "--providers.kubernetesCRD.namespaces=a,b", "--providers.kubernetescrd.throttleDuration=3"])
    ep = st.entry_points["web"]
    assert (ep.host, ep.port, ep.sanitize_path) == ("127.0.0.1", 8001, False)
    assert ep.tls == {"domains": [{"main": "example.com",
                                   "sans": ["a.example.com", "b.example.com"]}]}
    assert st.providers_crd.namespaces == ("a", "b")
    assert st.providers_crd.throttle_duration == 3.0


def test_flag_errors_suggest():
    with pytest.raises(ConfigError) as info:
        load_static(None, args=["--entryPoints.web.adress=:80"])
    e = info.value
    assert e.file == "command line" and e.field == "entryPoints.web.adress"
    assert "did you mean 'address'?" in e.message and "--entryPoints.web.adress" in e.message
    with pytest.raises(ConfigError, match="expected true or false"):
        load_static(None, args=["--entryPoints.web.address=:80",
                                "--entryPoints.web.http.sanitizePath=maybe"])


def test_environment_variables():
    environ = {"TRAEFIK_ENTRYPOINTS_WEB_ADDRESS": ":8002", "TRAEFIK_PING": "true",
               "TRAEFIK_PROVIDERS_KUBERNETESCRD_ALLOWCROSSNAMESPACE": "true",
               "TRAEFIK_ENTRYPOINTS_WEB_HTTP_TLS_DOMAINS_0_MAIN": "example.com",
               "TRAEFIK_SERVICE_HOST": "10.0.0.1",   # Kubernetes' own variables: not read
               "TRAEFIK_PORT": "tcp://10.0.0.1:80"}
    st = load_static(None, environ=environ)
    assert st.origin == "env"
    assert st.entry_points["web"].port == 8002
    assert st.entry_points["web"].tls == {"domains": [{"main": "example.com"}]}
    assert st.providers_crd.allow_cross_namespace is True
    assert st.warnings == () and st.ping is not None      # TRAEFIK_PING: served (issue 14)
    with pytest.raises(ConfigError) as info:
        load_static(None, environ={"TRAEFIK_ENTRYPOINTS_WEB_ADRESS": ":1"})
    assert info.value.file == "environment" and "TRAEFIK_ENTRYPOINTS_WEB_ADRESS" in \
        info.value.message


def test_one_source_only_as_traefik(tmp_path, monkeypatch):
    path = write(tmp_path, "entryPoints:\n  web: {address: ':8003'}\n")
    environ = {"TRAEFIK_ENTRYPOINTS_WEB_ADDRESS": ":8004"}
    flags = ["--entryPoints.web.address=:8005"]
    # the file wins over flags and environment
    st = load_static(path, args=flags, environ=environ)
    assert st.entry_points["web"].port == 8003 and st.origin == "file"
    assert {w.file for w in st.warnings} == {"command line", "environment"}
    st = load_static(None, args=flags + ["--configFile=" + path], environ=environ)
    assert st.entry_points["web"].port == 8003
    # flags win over the environment
    st = load_static(None, args=flags, environ=environ)
    assert st.entry_points["web"].port == 8005 and st.origin == "flags"
    assert [w.file for w in st.warnings] == ["environment"]
    # nothing at all: the defaults (and `pyroute run` without paths serves its demo)
    monkeypatch.chdir(tmp_path)
    assert load_static(None, environ={"HOME": str(tmp_path)}, search=True).origin == "default"
    # Traefik's default locations: ./traefik.yaml is found (only when asked to search)
    (tmp_path / "traefik.yaml").write_text("entryPoints:\n  web: {address: ':8006'}\n")
    assert load_static(None, args=flags, environ={"HOME": str(tmp_path / "none")},
                       search=True).entry_points["web"].port == 8006
    assert load_static(None, args=flags).entry_points["web"].port == 8005


# every flag traefik-helm-chart (v41.3, appVersion v3.7.11) can render in
# templates/_podtemplate.tpl, but Traefik Hub's and four keys that Traefik v3.7.9 does not
# have (core.strictTLSOptions, providers.kubernetescrd.safeNaming / defaultTLSResourcesNamespace,
# providers.kubernetesingressnginx.modsec)
HELM_TEMPLATE_FLAGS = [
    "accesslog", "accesslog.addinternals", "accesslog.bufferingsize", "accesslog.dualOutput",
    "accesslog.fields.defaultmode", "accesslog.fields.headers.defaultmode",
    "accesslog.fields.headers.names.x", "accesslog.fields.names.StartUTC",
    "accesslog.fields.names.x", "accesslog.fields.queryparameters.defaultmode",
    "accesslog.filepath", "accesslog.filters.minduration", "accesslog.filters.retryattempts",
    "accesslog.filters.statuscodes", "accesslog.format", "core.defaultRuleSyntax",
    "experimental.abortonpluginfailure", "experimental.fastProxy",
    "experimental.fastProxy.debug", "experimental.knative", "experimental.kubernetesgateway",
    "experimental.localPlugins.x.moduleName", "experimental.localPlugins.x.settings.useUnsafe",
    "experimental.otlpLogs", "experimental.plugins.x.hash", "experimental.plugins.x.moduleName",
    "experimental.plugins.x.settings.useUnsafe", "experimental.plugins.x.version",
    "global.checkNewVersion", "global.notAppendXForwardedFor", "global.sendAnonymousUsage",
    "log.filePath", "log.format", "log.level", "log.noColor", "metrics.addinternals",
    "metrics.datadog", "metrics.datadog.addEntryPointsLabels",
    "metrics.datadog.addRoutersLabels", "metrics.datadog.addServicesLabels",
    "metrics.datadog.address", "metrics.datadog.prefix", "metrics.datadog.pushInterval",
    "metrics.influxdb2", "metrics.influxdb2.addEntryPointsLabels",
    "metrics.influxdb2.addRoutersLabels", "metrics.influxdb2.addServicesLabels",
    "metrics.influxdb2.additionalLabels.web", "metrics.influxdb2.address",
    "metrics.influxdb2.bucket", "metrics.influxdb2.org", "metrics.influxdb2.pushInterval",
    "metrics.influxdb2.token", "metrics.otlp.addEntryPointsLabels",
    "metrics.otlp.addRoutersLabels", "metrics.otlp.addServicesLabels",
    "metrics.otlp.explicitBoundaries", "metrics.otlp.pushInterval", "metrics.prometheus",
    "metrics.prometheus.addEntryPointsLabels", "metrics.prometheus.addRoutersLabels",
    "metrics.prometheus.addServicesLabels", "metrics.prometheus.buckets",
    "metrics.prometheus.entrypoint", "metrics.prometheus.headerlabels.x",
    "metrics.prometheus.manualrouting", "metrics.statsd", "metrics.statsd.addEntryPointsLabels",
    "metrics.statsd.addRoutersLabels", "metrics.statsd.addServicesLabels",
    "metrics.statsd.address", "metrics.statsd.prefix", "metrics.statsd.pushInterval", "ocsp",
    "ping", "providers.file.directory", "providers.file.watch", "providers.knative",
    "providers.knative.labelSelector", "providers.knative.namespaces",
    "providers.kubernetescrd", "providers.kubernetescrd.allowCrossNamespace",
    "providers.kubernetescrd.allowEmptyServices",
    "providers.kubernetescrd.allowExternalNameServices",
    "providers.kubernetescrd.crossProviderNamespaces",
    "providers.kubernetescrd.disableClusterScopeResources",
    "providers.kubernetescrd.ingressClass", "providers.kubernetescrd.labelSelector",
    "providers.kubernetescrd.namespaces", "providers.kubernetescrd.nativeLBByDefault",
    "providers.kubernetesgateway", "providers.kubernetesgateway.burst",
    "providers.kubernetesgateway.crossProviderNamespaces",
    "providers.kubernetesgateway.experimentalchannel",
    "providers.kubernetesgateway.labelSelector", "providers.kubernetesgateway.namespaces",
    "providers.kubernetesgateway.nativeLBByDefault", "providers.kubernetesgateway.qps",
    "providers.kubernetesgateway.statusaddress.hostname",
    "providers.kubernetesgateway.statusaddress.ip",
    "providers.kubernetesgateway.statusaddress.service.name",
    "providers.kubernetesgateway.statusaddress.service.namespace",
    "providers.kubernetesingress", "providers.kubernetesingress.allowEmptyServices",
    "providers.kubernetesingress.allowExternalNameServices",
    "providers.kubernetesingress.crossProviderNamespaces",
    "providers.kubernetesingress.disableClusterScopeResources",
    "providers.kubernetesingress.ingressClass",
    "providers.kubernetesingress.ingressendpoint.hostname",
    "providers.kubernetesingress.ingressendpoint.ip",
    "providers.kubernetesingress.ingressendpoint.publishedservice",
    "providers.kubernetesingress.labelSelector", "providers.kubernetesingress.namespaces",
    "providers.kubernetesingress.nativeLBByDefault",
    "providers.kubernetesingress.strictPrefixMatching", "providers.kubernetesingressnginx",
    "providers.kubernetesingressnginx.publishservice",
    "providers.kubernetesingressnginx.watchnamespace", "providers.precedence",
    "tracing.addinternals", "tracing.capturedRequestHeaders", "tracing.capturedResponseHeaders",
    "tracing.resourceAttributes.web", "tracing.safeQueryParams", "tracing.sampleRate",
    "tracing.serviceName", "entryPoints.web.allowACMEByPass",
    "entryPoints.web.forwardedHeaders.insecure",
    "entryPoints.web.forwardedHeaders.notAppendXForwardedFor",
    "entryPoints.web.forwardedHeaders.trustedIPs", "entryPoints.web.http.maxHeaderBytes",
    "entryPoints.web.http.middlewares",
    "entryPoints.web.http.redirections.entryPoint.permanent",
    "entryPoints.web.http.redirections.entryPoint.priority",
    "entryPoints.web.http.redirections.entryPoint.scheme",
    "entryPoints.web.http.redirections.entryPoint.to", "entryPoints.web.http.sanitizePath",
    "entryPoints.web.http.tls", "entryPoints.web.http.tls.certResolver",
    "entryPoints.web.http.tls.domains[0].main", "entryPoints.web.http.tls.domains[0].sans",
    "entryPoints.web.http.tls.options", "entryPoints.web.http.underscoreHeadersStrategy",
    "entryPoints.web.http3", "entryPoints.web.http3.advertisedPort",
    "entryPoints.web.proxyProtocol.insecure", "entryPoints.web.proxyProtocol.trustedIPs",
    "entryPoints.web.transport.keepAliveMaxRequests",
    "entryPoints.web.transport.keepAliveMaxTime",
    "entryPoints.web.transport.lifeCycle.graceTimeOut",
    "entryPoints.web.transport.lifeCycle.requestAcceptGraceTimeout",
    "entryPoints.web.transport.respondingTimeouts.idleTimeout",
    "entryPoints.web.transport.respondingTimeouts.readTimeout",
    "entryPoints.web.transport.respondingTimeouts.writeTimeout", "entryPoints.web.address",
    "entryPoints.web.asDefault", "entryPoints.web.observability.accessLogs",
    "entryPoints.web.observability.metrics", "entryPoints.web.observability.traceVerbosity",
    "entryPoints.web.observability.tracing",
]

_SAMPLES = {"bool": "true", "int": "1", "float": "0.5", "duration": "2s", "list": "a,b",
            "list:float": "0.1,0.3", "string": "x", "map": None, "section": None, "any": "x"}
_VALUES = {"address": ":8000/tcp", "to": ":8443", "level": "INFO", "labelSelector": "app=x",
           "trustedIPs": "10.0.0.0/8", "buckets": "0.1,0.3", "explicitBoundaries": "0.1",
           "defaultRuleSyntax": "v3", "underscoreHeadersStrategy": "delete"}


def test_every_helm_chart_flag_loads():
    from pyroute.static import _flat_segments, _key_type
    args = []
    for name in HELM_TEMPLATE_FLAGS:
        key, typ = _key_type(_flat_segments(name))
        assert key is not None, name
        last = name.split(".")[-1].split("[")[0]
        value = _VALUES.get(last, _SAMPLES.get(typ, "x"))
        args.append("--" + name if value is None else "--%s=%s" % (name, value))
    st = load_static(None, args=args)
    assert st.entry_points["web"].port == 8000
    assert all(w.severity == "warning" for w in st.warnings)
# ---- api (issue 15) ---------------------------------------------------------------------

def test_api_section_defaults_and_traefik_entry_point():
    from pyroute.static import static_from_mapping
    s = static_from_mapping({"entryPoints": {"web": {"address": ":80"}}})
    assert s.api is None
    s = static_from_mapping({"entryPoints": {"web": {"address": ":80"}}, "api": None})
    assert (s.api.insecure, s.api.dashboard, s.api.base_path, s.api.debug) == (
        False, True, "/", False)                      # Traefik's API.SetDefaults
    assert s.api.entry_point is None
    # insecure: the entry point "traefik", ":8080" unless defined (Traefik's
    # SetEffectiveConfiguration); the workers', never a default one
    s = static_from_mapping({"entryPoints": {"web": {"address": ":80"}},
                             "api": {"insecure": True}})
    assert (s.api.entry_point.name, s.api.entry_point.host, s.api.entry_point.port) == (
        "traefik", "", 8080)
    assert list(s.entry_points) == ["web", "traefik"]
    assert s.entry_points["traefik"] is s.api.entry_point
    assert s.default_entry_points() == ["web"]
    assert not s.warnings
    s = static_from_mapping({"entryPoints": {"web": {"address": ":80"},
                                             "traefik": {"address": "127.0.0.1:9000"}},
                             "api": {"insecure": True, "dashboard": False,
                                     "basePath": "/x", "debug": True}})
    assert s.api.entry_point.port == 9000 and list(s.entry_points) == ["web", "traefik"]
    assert (s.api.dashboard, s.api.base_path, s.api.debug) == (False, "/x", True)
    # basePath with insecure: Traefik's docs say incompatible; warned, never refused
    assert [w.field for w in s.warnings] == ["api.debug", "api.basePath"]
    assert "incompatible with api.insecure" in s.warnings[1].message
    # only "traefik" (api.insecure needs no other entry point, as in Traefik)
    s = static_from_mapping({"entryPoints": {"traefik": {"address": ":9000"}},
                             "api": {"insecure": True}})
    assert list(s.entry_points) == ["traefik"] and s.default_entry_points() == []


def test_api_section_errors_name_the_key():
    import pytest
    from pyroute.errors import ConfigError
    from pyroute.static import static_from_mapping
    for raw, field in (({"insecure": "yes"}, "api.insecure"), ({"bogus": 1}, "api.bogus"),
                       ({"basePath": "x"}, "api.basePath")):
        with pytest.raises(ConfigError) as e:
            static_from_mapping({"entryPoints": {"web": {"address": ":80"}}, "api": raw},
                                source="s.yaml")
        assert e.value.field == field and e.value.file == "s.yaml"
    with pytest.raises(ConfigError) as e:
        static_from_mapping({"entryPoints": {"web": {"address": ":8080"}},
                             "api": {"insecure": True}})
    assert "traefik" in str(e.value)


def test_traefik_entry_point_is_never_a_default_one():
    from pyroute.static import static_from_mapping
    s = static_from_mapping({"entryPoints": {"web": {"address": ":80"},
                                             "traefik": {"address": ":8080"}}})
    assert list(s.entry_points) == ["web", "traefik"]
    assert s.default_entry_points() == ["web"]
