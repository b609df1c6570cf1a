"""Generate pyroute/static_keys.py: every key of Traefik's static configuration, with its type.

Usage: python scripts/gen_static_keys.py TRAEFIK_CHECKOUT > pyroute/static_keys.py

Sources (Traefik v3.7, generated from pkg/config/static/*.go by Traefik's own tooling):
``docs/content/reference/static-configuration/file.yaml`` (every key, camelCase, with a sample
value giving its type: true = bool, 42 = int, 42s = duration, foobar = string, lists, maps of
``name0``) and ``docs/content/reference/install-configuration/configuration-options.md`` (the
newer, complete list, lower-case). Keys only the second one lists get their spelling and type
from ``EXTRA`` below (checked against the json tags in Traefik's Go source).
"""
import re
import subprocess
import sys

import yaml

MAP_NAMES = {"EntryPoint0", "PluginConf0", "CertificateResolver0", "Descriptor0",
             "LocalDescriptor0", "name0"}
SKIP = {"name1", "PluginConf1", "CertificateResolver1", "Descriptor1", "LocalDescriptor1"}

# key -> type, for keys configuration-options.md lists and file.yaml does not (yet)
EXTRA = {
    "accessLog.dualOutput": "bool",
    "accessLog.fields.queryParameters": "section",
    "accessLog.fields.queryParameters.defaultMode": "string",
    "api.dashboardName": "string",
    "certificatesResolvers.<name>.acme.certificateTimeout": "duration",
    "entryPoints.<name>.forwardedHeaders.notAppendXForwardedFor": "bool",
    "entryPoints.<name>.http2.maxDecoderHeaderTableSize": "int",
    "entryPoints.<name>.http2.maxEncoderHeaderTableSize": "int",
    "experimental.knative": "bool",
    "experimental.plugins.<name>.hash": "string",
    "global.notAppendXForwardedFor": "bool",
    "providers.knative": "section",
    "providers.knative.certAuthFilePath": "string",
    "providers.knative.endpoint": "string",
    "providers.knative.labelSelector": "string",
    "providers.knative.namespaces": "list",
    "providers.knative.privateEntrypoints": "list",
    "providers.knative.privateService": "section",
    "providers.knative.privateService.name": "string",
    "providers.knative.privateService.namespace": "string",
    "providers.knative.publicEntrypoints": "list",
    "providers.knative.publicService": "section",
    "providers.knative.publicService.name": "string",
    "providers.knative.publicService.namespace": "string",
    "providers.knative.throttleDuration": "duration",
    "providers.knative.token": "string",
    "providers.kubernetesCRD.crossProviderNamespaces": "list",
    "providers.kubernetesGateway.burst": "int",
    "providers.kubernetesGateway.crossProviderNamespaces": "list",
    "providers.kubernetesGateway.qps": "int",
    "providers.kubernetesIngress.crossProviderNamespaces": "list",
    "providers.kubernetesIngress.reportNodeInternalIPs": "bool",
    "providers.kubernetesIngressNGINX.allowCrossNamespaceResources": "bool",
    "providers.kubernetesIngressNGINX.allowSnippetAnnotations": "bool",
    "providers.kubernetesIngressNGINX.clientBodyBufferSize": "int",
    "providers.kubernetesIngressNGINX.customHTTPErrors": "list",
    "providers.kubernetesIngressNGINX.globalAllowedResponseHeaders": "list",
    "providers.kubernetesIngressNGINX.globalAuthURL": "string",
    "providers.kubernetesIngressNGINX.httpEntryPoint": "string",
    "providers.kubernetesIngressNGINX.httpsEntryPoint": "string",
    "providers.kubernetesIngressNGINX.ipAllowListStrategy": "section",
    "providers.kubernetesIngressNGINX.ipAllowListStrategy.depth": "int",
    "providers.kubernetesIngressNGINX.ipAllowListStrategy.excludedIPs": "list",
    "providers.kubernetesIngressNGINX.ipAllowListStrategy.ipv6Subnet": "int",
    "providers.kubernetesIngressNGINX.proxyBodySize": "int",
    "providers.kubernetesIngressNGINX.proxyBuffering": "bool",
    "providers.kubernetesIngressNGINX.proxyBufferSize": "int",
    "providers.kubernetesIngressNGINX.proxyBuffersNumber": "int",
    "providers.kubernetesIngressNGINX.proxyConnectTimeout": "int",
    "providers.kubernetesIngressNGINX.proxyNextUpstream": "string",
    "providers.kubernetesIngressNGINX.proxyNextUpstreamTimeout": "int",
    "providers.kubernetesIngressNGINX.proxyNextUpstreamTries": "int",
    "providers.kubernetesIngressNGINX.proxyReadTimeout": "int",
    "providers.kubernetesIngressNGINX.proxyRequestBuffering": "bool",
    "providers.kubernetesIngressNGINX.proxySendTimeout": "int",
    "providers.kubernetesIngressNGINX.strictValidatePathType": "bool",
    "providers.kubernetesIngressNGINX.upstreamKeepaliveTimeout": "int",
    "providers.precedence": "list",
    # file.yaml's sample value is 42, Go's type float64
    "metrics.prometheus.buckets": "list:float",
    "metrics.otlp.explicitBoundaries": "list:float",
    # file.yaml's sample value is 42, Go's type float64 (a rate between 0.0 and 1.0)
    "tracing.sampleRate": "float",
}


def scalar_type(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if v == "42s":
        return "duration"
    return "string"


def walk(v, path, out):
    if isinstance(v, dict):
        if path:
            out[path] = "map" if set(v) & {"name0"} else "section"
        if "name0" in v:
            out[path + ".<name>"] = "string"
            return
        if path == "providers.plugin":
            out[path + ".<name>"] = "any"     # a plugin's own settings: free content
            return
        for k, x in v.items():
            if k in SKIP:
                continue
            kk = "<name>" if k in MAP_NAMES else k
            walk(x, path + "." + kk if path else kk, out)
    elif isinstance(v, list):
        if v and isinstance(v[0], dict):
            out[path] = "sections"
            walk(v[0], path + "[n]", out)
            del out[path + "[n]"]
        else:
            out[path] = "list" if not v or scalar_type(v[0]) == "string" else \
                "list:" + scalar_type(v[0])
    else:
        out[path] = scalar_type(v)


def main(repo):
    def show(p):
        return subprocess.run(["git", "-C", repo, "show", "HEAD:" + p], check=True,
                              capture_output=True, text=True).stdout
    data = yaml.safe_load(show("docs/content/reference/static-configuration/file.yaml"))
    keys = {}
    walk(data, "", keys)
    keys["entryPoints.<name>.http.tls.domains[n].main"] = "string"
    keys["entryPoints.<name>.http.tls.domains[n].sans"] = "list"
    keys.update(EXTRA)
    md = show("docs/content/reference/install-configuration/configuration-options.md")
    documented = set(re.findall(r'<a id="opt-[^"]*" [^>]*>([^<]+)</a>', md))
    lower = {k.lower().replace("<name>", "_name_").replace("[n]", "[0]"): k for k in keys}
    missing = sorted(d for d in documented if d not in lower)
    if missing:
        sys.exit("keys without a type (add them to EXTRA): %s" % ", ".join(missing))
    print('"""Every key of Traefik v3.7\'s static configuration and its type (generated by')
    print('scripts/gen_static_keys.py from Traefik\'s own reference; do not edit by hand).')
    print()
    print("Types: section (a mapping of known keys; may be given as true/false to enable it),")
    print("sections (a list of sections), map (a mapping of free names to strings), list (of")
    print("strings; list:int / list:float), bool, int, float, duration, string. ``<name>`` is a")
    print('free map key, ``[n]`` a list index."""')
    print()
    print("KEY_TYPES = {")
    for k in sorted(keys, key=lambda s: s.lower()):
        print("    %r: %r," % (k, keys[k]))
    print("}")


if __name__ == "__main__":
    main(sys.argv[1])
