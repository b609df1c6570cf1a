"""``pyroute check`` on middleware configurations: what Traefik v3.7 refuses is an error that
disables the middleware and its routers (file:line, object, field), what it deprecates is a
warning, zero values are no error; the entry point's encodedCharacters notice."""
import json
import subprocess
import sys

from manifests_util import service, write

ROUTE = """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.example.com`)
      middlewares: [{name: m}]
      services: [{name: whoami, port: 80}]
"""


def middleware(spec):
    return ("apiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
            "metadata: {name: m, namespace: default}\nspec:\n%s" % spec)


def check(tmp_path, spec, *args):
    path = write(tmp_path, "a.yaml", ROUTE, service("whoami"), middleware(spec))
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", *args, str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    return path, out


def test_refused_by_traefik_is_an_error_that_disables_the_router(tmp_path):
    cases = [
        ("  headers: {}\n", "spec.headers: headers configuration not valid"),
        ("  headers: {frameDeny: false}\n", "spec.headers: headers configuration not valid"),
        ("  headers: {customRequestHeaders: {}}\n",
         "spec.headers: headers configuration not valid"),
        ("  headers: {accessControlAllowOriginListRegex: ['^https://ok$', 'a(b']}\n",
         "spec.headers.accessControlAllowOriginListRegex[1]: error occurred during origin "
         "parsing: missing ): a(b"),
        ("  addPrefix: {}\n", "spec.addPrefix.prefix: prefix cannot be empty"),
        ("  redirectScheme: {port: \"443\"}\n",
         "spec.redirectScheme.scheme: you must provide a target scheme"),
        ("  ipAllowList: {sourceRange: [10.0.0.0/8], rejectStatusCode: 99}\n",
         "spec.ipAllowList.rejectStatusCode: invalid HTTP status code 99"),
        ("  ipAllowList: {sourceRange: [10.0.0.0/8], rejectStatusCode: 600}\n",
         "spec.ipAllowList.rejectStatusCode: invalid HTTP status code 600"),
        ("  ipAllowList: {sourceRange: [10.0.0.0/8], ipStrategy: {ipv6Subnet: 0}}\n",
         "spec.ipAllowList.ipStrategy.ipv6Subnet: invalid IPv6 subnet 0"),
        ("  ipAllowList: {sourceRange: [10.0.0.0/8], ipStrategy: {depth: 2, ipv6Subnet: 200}}\n",
         "spec.ipAllowList.ipStrategy.ipv6Subnet: invalid IPv6 subnet 200"),
        ("  ipAllowList: {sourceRange: [\"10.0.0.1:8080\"]}\n",
         "spec.ipAllowList.sourceRange: '10.0.0.1:8080' is neither an IP nor a CIDR"),
        ("  ipAllowList: {sourceRange: []}\n",
         "spec.ipAllowList: sourceRange is empty, IPAllowLister not created"),
    ]
    for spec, message in cases:
        path, out = check(tmp_path, spec)
        assert out.returncode == 1, (spec, out.stdout, out.stderr)
        lines = out.stdout.splitlines()
        assert any(ln.startswith("%s:" % path) and ": Middleware default/m: %s" % message
                   in ln for ln in lines), (spec, lines)
        assert any("middleware 'default-m@kubernetescrd' is disabled" in ln for ln in lines)
        path, out = check(tmp_path, spec, "--dump")
        dump = json.loads(out.stdout)
        mw = dump["http"]["middlewares"]["default-m@kubernetescrd"]
        assert mw["status"] == "disabled" and mw["error"]
        (router,) = dump["http"]["routers"].values()
        assert router["status"] == "disabled"


def test_excluded_ips_do_not_read_ipv6_subnet(tmp_path):
    # Traefik's IPStrategy.Get: with excludedIPs (and no depth) ipv6Subnet is never checked
    _, out = check(tmp_path, "  ipAllowList: {sourceRange: [10.0.0.0/8],"
                             " ipStrategy: {excludedIPs: [10.0.0.1], ipv6Subnet: 0}}\n")
    assert out.returncode == 0, out.stdout


def test_deprecated_options_are_warnings(tmp_path):
    spec = ("  headers:\n    sslRedirect: true\n    sslTemporaryRedirect: false\n"
            "    sslHost: example.com\n    sslForceHost: true\n    featurePolicy: x\n"
            "    customResponseHeaders: {X-A: b}\n")
    path, out = check(tmp_path, spec)
    assert out.returncode == 0, out.stdout + out.stderr
    for opt in ("sslRedirect", "sslTemporaryRedirect", "sslHost", "sslForceHost",
                "featurePolicy"):
        assert "Middleware default/m: spec.headers.%s: warning: headers option %s is " \
               "deprecated" % (opt, opt) in out.stdout
    _, out = check(tmp_path, "  stripPrefix: {prefixes: [/a], forceSlash: false}\n")
    assert out.returncode == 0
    assert "spec.stripPrefix.forceSlash: warning: `ForceSlash` option is deprecated" in out.stdout
    # a deprecated no-op counts as a secure header for Traefik: the middleware is valid
    _, out = check(tmp_path, "  headers: {sslRedirect: true}\n")
    assert out.returncode == 0


def test_zero_values_are_no_error(tmp_path):
    _, out = check(tmp_path, "  headers:\n    frameDeny: false\n    stsPreload: false\n"
                             "    customFrameOptionsValue: \"\"\n"
                             "    customRequestHeaders: {X-A: b}\n")
    assert out.returncode == 0 and "error" not in out.stdout, out.stdout


def test_service_level_middleware_refused_disables_the_service_and_router(tmp_path):
    route = ROUTE.replace("      middlewares: [{name: m}]\n", "").replace(
        "services: [{name: whoami, port: 80}]",
        "services: [{name: whoami, port: 80, middlewares: [{name: m}]}]")
    write(tmp_path, "a.yaml", route, service("whoami"), middleware("  headers: {}\n"))
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "--dump", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    dump = json.loads(out.stdout)
    (router,) = dump["http"]["routers"].values()
    assert router["status"] == "disabled"
    assert "headers configuration not valid" in out.stderr


def test_encoded_characters_notice_once(tmp_path):
    # the default allows every encoded character (Traefik v3.7): one line says how to refuse
    _, out = check(tmp_path, "  stripPrefix: {prefixes: [/a]}\n")
    notices = [ln for ln in out.stderr.splitlines() if "encoded" in ln]
    assert len(notices) == 1
    assert notices[0].startswith("info: entry point web allows every encoded character")
    assert "to false" in notices[0] and "docs/security.md" in notices[0]
    static = tmp_path.parent / ("%s-static.yaml" % tmp_path.name)
    allow = ", ".join("allowEncoded%s: true" % k for k in (
        "Slash", "BackSlash", "NullCharacter", "Semicolon", "Percent", "QuestionMark", "Hash"))
    static.write_text("entryPoints:\n  web:\n    address: '127.0.0.1:8000'\n    http:\n"
                      "      encodedCharacters: {%s}\n" % allow)
    _, out = check(tmp_path, "  stripPrefix: {prefixes: [/a]}\n", "-c", str(static))
    notices = [ln for ln in out.stderr.splitlines() if "encoded" in ln]
    assert len(notices) == 1
    assert notices[0].startswith("info: entry point web allows every encoded character")
    assert "allowEncodedSlash" in notices[0] and "to false" in notices[0]
    # hardened (one escape refused): nothing to say
    static.write_text("entryPoints:\n  web:\n    address: '127.0.0.1:8000'\n    http:\n"
                      "      encodedCharacters: {allowEncodedSlash: false}\n")
    _, out = check(tmp_path, "  stripPrefix: {prefixes: [/a]}\n", "-c", str(static))
    assert "encoded" not in out.stderr
    _, out = check(tmp_path, "  stripPrefix: {prefixes: [/a]}\n", "--no-warnings")
    assert "encoded" not in out.stderr


def test_every_headers_option_is_accepted(tmp_path):
    # Traefik v3.7 runs them all: no error, no warning, the router enabled
    spec = """\
  headers:
    customRequestHeaders: {X-A: a}
    customResponseHeaders: {X-B: b}
    accessControlAllowCredentials: true
    accessControlAllowHeaders: [X-A]
    accessControlAllowMethods: [GET]
    accessControlAllowOriginList: ["https://a.example"]
    accessControlAllowOriginListRegex: ["^https://[a-z]+\\\\.example$"]
    accessControlExposeHeaders: [X-B]
    accessControlMaxAge: 60
    addVaryHeader: true
    allowedHosts: [a.example.com]
    hostsProxyHeaders: [X-Forwarded-Host]
    sslProxyHeaders: {X-Forwarded-Proto: https}
    stsSeconds: 60
    stsIncludeSubdomains: true
    stsPreload: true
    forceSTSHeader: true
    frameDeny: true
    customFrameOptionsValue: SAMEORIGIN
    contentTypeNosniff: true
    browserXssFilter: true
    customBrowserXSSValue: "0"
    contentSecurityPolicy: "script-src $NONCE"
    contentSecurityPolicyReportOnly: "default-src 'self'"
    publicKey: 'pin-sha256="x"'
    referrerPolicy: same-origin
    permissionsPolicy: "camera=()"
    isDevelopment: false
"""
    _, out = check(tmp_path, spec, "--dump")
    assert out.returncode == 0, (out.stdout, out.stderr)
    dump = json.loads(out.stdout)
    assert dump["http"]["middlewares"]["default-m@kubernetescrd"]["status"] == "enabled"
    (router,) = dump["http"]["routers"].values()
    assert router["status"] == "enabled"
    _, out = check(tmp_path, spec)
    assert "warning" not in out.stdout and "not supported" not in out.stdout + out.stderr
