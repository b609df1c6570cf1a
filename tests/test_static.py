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
    # Traefik >= v3.6.4 (CVE-2025-66490): encoded / \\ NUL ; ? # refused by default, %25 allowed
    assert ep.denied_encoded_characters == frozenset(
        {"%2F", "%2f", "%5C", "%5c", "%00", "%3B", "%3b", "%3F", "%3f", "%23"})
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
    ("entrypoints: {}\n", "entrypoints", "unknown key 'entrypoints'"),
    ("entryPoints:\n  web: {address: ':80', http: {sanitizePath: 1}}\n",
     "entryPoints.web.http.sanitizePath", "expected true or false"),
    ("entryPoints:\n  web: {address: ':99999'}\n", "entryPoints.web.address", "out of range"),
    ("entryPoints:\n  web: {address: ':80/udp'}\n", "entryPoints.web.address", "TCP only"),
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
    ("providers:\n  docker: {}\n", "providers.docker", "unknown key 'docker'"),
    ("log: {level: loud}\n", "log.level", "unknown level"),
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


# ---- api (issue 15) ---------------------------------------------------------------------

def test_api_section_defaults_and_traefik_entry_point():
    from pyroute.static import static_from_mapping
    s = static_from_mapping({"entryPoints": {"web": {"address": ":80"}}})
    assert s.api is None
    s = static_from_mapping({"entryPoints": {"web": {"address": ":80"}}, "api": None})
    assert (s.api.insecure, s.api.dashboard, s.api.base_path, s.api.debug) == (
        False, True, "/", False)                      # Traefik's API.SetDefaults
    assert s.api.entry_point is None
    # insecure: the internal entry point "traefik", ":8080" unless defined; the master's
    s = static_from_mapping({"entryPoints": {"web": {"address": ":80"}},
                             "api": {"insecure": True}})
    assert (s.api.entry_point.name, s.api.entry_point.host, s.api.entry_point.port) == (
        "traefik", "", 8080)
    assert list(s.entry_points) == ["web"]
    s = static_from_mapping({"entryPoints": {"web": {"address": ":80"},
                                             "traefik": {"address": "127.0.0.1:9000"}},
                             "api": {"insecure": True, "dashboard": False,
                                     "basePath": "/x", "debug": True}})
    assert s.api.entry_point.port == 9000 and list(s.entry_points) == ["web"]
    assert (s.api.dashboard, s.api.base_path, s.api.debug) == (False, "/x", True)


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
