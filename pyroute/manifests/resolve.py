"""Objects -> Traefik's dynamic configuration, as Traefik's Kubernetes CRD provider builds it.

Mirrors traefik/traefik ``pkg/provider/kubernetes/crd/kubernetes.go`` and
``kubernetes_http.go`` (loadIngressRouteConfiguration, nameAndService, buildServersLB,
loadServers, buildTraefikService, the middleware builders, buildTLSOptions/buildTLSStores),
then the checks Traefik's runtime does when it wires routers (a router whose service,
middleware, TLS option or entry point does not exist is disabled, with the reason).

Where Traefik logs an error and skips a route, pyroute keeps the router in the output with
``"status": "disabled"`` and its ``"error"`` list (Traefik's runtime API shape), and records a
ConfigError pointing at the field; everything else is still served.
"""
import base64
import binascii
import hashlib

from ..static import parse_duration
from .labels import matches, parse_selector
from .names import (PROVIDER, SEPARATOR, format_duration, make_id, make_service_key, normalize,
                    qualified, split_provider)
from .rulecheck import check_rule

__all__ = ["resolve", "RouteSource"]

DEFAULT_TLS = "default"
ALPN_DEFAULT = ["h2", "http/1.1", "acme-tls/1"]
# Go's crypto/tls CipherSuites() (the secure list), Traefik's DefaultTLSOptions.CipherSuites.
GO_CIPHER_SUITES = [
    "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
]

MIDDLEWARE_KINDS = (
    "addPrefix", "stripPrefix", "stripPrefixRegex", "replacePath", "replacePathRegex", "chain",
    "ipWhiteList", "ipAllowList", "headers", "errors", "rateLimit", "redirectRegex",
    "redirectScheme", "basicAuth", "digestAuth", "forwardAuth", "inFlightReq", "buffering",
    "circuitBreaker", "compress", "passTLSClientCert", "retry", "contentType", "grpcWeb",
    "plugin", "encodedCharacters")


class RefError(Exception):
    """A reference that cannot be resolved; ``path`` is the field (relative to the caller's)."""

    def __init__(self, message, path=()):
        super().__init__(message)
        self.message = message
        self.path = tuple(path)


class RouteSource:
    """Where a router came from: the IngressRoute and the index of its route."""

    __slots__ = ("obj", "index")

    def __init__(self, obj, index):
        self.obj = obj
        self.index = index

    @property
    def path(self):
        return ("spec", "routes", self.index)


class Store:
    """The objects of one load, indexed as Traefik's Kubernetes client serves them."""

    def __init__(self, objects, crd):
        self.by_kind = {}
        self.slices = {}              # (namespace, service name) -> [EndpointSlice]
        selector = parse_selector(crd.label_selector)
        namespaces = set(crd.namespaces)
        self.duplicates = []
        for obj in objects:
            if namespaces and obj.namespace not in namespaces:
                continue
            if selector and obj.api_version.startswith("traefik.") and not matches(
                    selector, obj.metadata.get("labels")):
                continue
            table = self.by_kind.setdefault(obj.kind, {})
            key = (obj.namespace, obj.name)
            if key in table:
                prev = table[key]
                self.duplicates.append(obj.error(
                    "%s %s is defined again (first at %s:%s); the later definition is used, "
                    "as kubectl apply would" % (obj.kind, obj.ref, prev.file, prev.line),
                    severity="warning"))
            table[key] = obj
        for obj in self.by_kind.get("EndpointSlice", {}).values():
            svc = (obj.metadata.get("labels") or {}).get("kubernetes.io/service-name")
            if svc:
                self.slices.setdefault((obj.namespace, svc), []).append(obj)

    def get(self, kind, namespace, name):
        return self.by_kind.get(kind, {}).get((namespace, name))

    def all(self, kind):
        return list(self.by_kind.get(kind, {}).values())


def _is_namespace_allowed(allow_cross, parent_ns, ns):
    # Traefik isNamespaceAllowed: cross-namespace references only when allowed.
    return allow_cross or parent_ns == ns


def _port_str(port):
    return str(port)


def _port_set(port):
    if port is None:
        return False
    if isinstance(port, int):
        return port != 0
    return port != ""


class Resolver:
    def __init__(self, objects, static):
        self.static = static
        self.crd = static.providers_crd
        self.store = Store(objects, self.crd)
        self.errors = list(self.store.duplicates)
        self.http = {"routers": {}, "services": {}, "middlewares": {}, "serversTransports": {}}
        self.tls = {"options": {}, "stores": {}, "certificates": []}
        self.tls_configs = {}         # "ns/secret" -> certificate dict
        self.router_sources = {}      # qualified router name -> RouteSource
        self.service_sources = {}     # qualified service name -> (obj, path)
        self.middleware_sources = {}  # qualified middleware name -> obj
        self.ingress_routers = {}     # (ns, name) of IngressRoute -> [qualified router names]

    # -- errors ---------------------------------------------------------------------------
    def err(self, obj, message, path=(), severity="error"):
        e = obj.error(message, tuple(path), severity=severity)
        self.errors.append(e)
        return e

    # -- secrets --------------------------------------------------------------------------
    def secret_data(self, namespace, name):
        """The decoded data of Secret namespace/name (str -> str), or None if it doesn't exist."""
        obj = self.store.get("Secret", namespace, name)
        if obj is None:
            return None
        data = {}
        for k, v in (obj.body.get("data") or {}).items():
            try:
                data[k] = base64.b64decode(v.encode("ascii"), validate=True).decode("utf-8")
            except (binascii.Error, ValueError, UnicodeError):
                self.err(obj, "not valid base64 (Secret data values are base64-encoded; "
                              "use stringData for plain text)", ("data", k))
        for k, v in (obj.body.get("stringData") or {}).items():
            data[k] = v
        return data

    def secret_object(self, namespace, name):
        return self.store.get("Secret", namespace, name)

    def certificate_blocks(self, namespace, name):
        data = self.secret_data(namespace, name)
        if data is None:
            raise RefError("secret %s/%s does not exist" % (namespace, name))
        missing = [k for k in ("tls.crt", "tls.key") if k not in data]
        if missing:
            raise RefError("secret %s/%s is missing the following TLS data entries: %s"
                           % (namespace, name, ", ".join(missing)))
        empty = [k for k in ("tls.crt", "tls.key") if not data[k]]
        if empty:
            raise RefError("secret %s/%s contains the following empty TLS data entries: %s"
                           % (namespace, name, ", ".join(empty)))
        return data["tls.crt"], data["tls.key"]

    def ca_blocks(self, namespace, name):
        data = self.secret_data(namespace, name)
        if data is None:
            raise RefError("secret '%s/%s' not found" % (namespace, name))
        for key in ("tls.ca", "ca.crt"):
            if key in data:
                return data[key]
        if len(data) == 1:   # Traefik: backward compatibility, the only entry is the CA
            return next(iter(data.values()))
        raise RefError("secret '%s/%s' has no CA block: contains neither tls.ca nor ca.crt"
                       % (namespace, name))

    def ca_configmap(self, namespace, name):
        obj = self.store.get("ConfigMap", namespace, name)
        if obj is None:
            raise RefError("configMap '%s/%s' not found" % (namespace, name))
        data = obj.body.get("data") or {}
        for key in ("tls.ca", "ca.crt"):
            if key in data:
                return data[key]
        raise RefError("configMap '%s/%s' has no CA block" % (namespace, name))

    # -- services -------------------------------------------------------------------------
    def name_and_service(self, parent_ns, spec, path):
        """Traefik nameAndService: (full name, service dict or None for a TraefikService)."""
        name = spec.get("name", "")
        namespace = spec.get("namespace") or parent_ns
        if not _is_namespace_allowed(self.crd.allow_cross_namespace, parent_ns, namespace):
            raise RefError("service %s/%s not in the parent resource namespace %s (set "
                           "allowCrossNamespace to allow it)"
                           % (spec.get("namespace", ""), name, parent_ns), path + ("namespace",))
        kind = spec.get("kind") or "Service"
        if kind == "Service":
            lb = self.build_servers_lb(namespace, spec, path)
            return self.full_service_name(namespace, spec, spec.get("port")), lb
        if kind == "TraefikService":
            full = self.full_service_name(namespace, spec, 0)
            return full, None
        raise RefError("unsupported service kind %s" % kind, path + ("kind",))

    def full_service_name(self, namespace, spec, port):
        name = spec.get("name", "")
        if _port_set(port):
            return normalize("%s-%s-%s" % (namespace, name, _port_str(port)))
        if SEPARATOR not in name:
            return normalize("%s-%s" % (namespace, name))
        base, provider = split_provider(name)
        if provider == PROVIDER:
            return normalize("%s-%s" % (namespace, base))
        return normalize(base) + SEPARATOR + provider

    def build_servers_lb(self, namespace, spec, path):
        lb = {"servers": [], "strategy": "wrr"}
        strategy = spec.get("strategy")
        if strategy:
            if strategy in ("wrr", "p2c", "hrw", "leasttime"):
                lb["strategy"] = strategy
            elif strategy == "RoundRobin":
                if self._current is not None:
                    self.err(self._current, "RoundRobin strategy value is deprecated, please "
                             "use wrr value instead", path + ("strategy",), "warning")
            else:
                raise RefError("load-balancer strategy %s is not supported" % strategy,
                               path + ("strategy",))
        lb["servers"] = self.load_servers(namespace, spec, path)
        if spec.get("healthCheck") is not None:
            hc = dict(spec["healthCheck"])
            for key, default in (("interval", 30.0), ("timeout", 5.0)):
                hc[key] = format_duration(self.duration(hc.get(key), default, path +
                                                        ("healthCheck", key)))
            hc["unhealthyInterval"] = format_duration(self.duration(
                hc.get("unhealthyInterval"), parse_duration(hc["interval"]),
                path + ("healthCheck", "unhealthyInterval")))
            hc.setdefault("followRedirects", True)
            lb["healthCheck"] = hc
        if spec.get("passiveHealthCheck") is not None:
            p = spec["passiveHealthCheck"]
            lb["passiveHealthCheck"] = {
                "maxFailedAttempts": p.get("maxFailedAttempts", 1),
                "failureWindow": format_duration(self.duration(
                    p.get("failureWindow"), 10.0, path + ("passiveHealthCheck", "failureWindow")))}
        pass_host = spec.get("passHostHeader")
        lb["passHostHeader"] = True if pass_host is None else pass_host
        flush = 0.1   # Traefik ResponseForwarding default flushInterval: 100ms
        rf = spec.get("responseForwarding") or {}
        if rf.get("flushInterval"):
            try:
                flush = parse_duration(rf["flushInterval"])
            except ValueError as e:
                raise RefError("unable to parse flushInterval: %s" % e,
                               path + ("responseForwarding", "flushInterval")) from None
        lb["responseForwarding"] = {"flushInterval": format_duration(flush)}
        sticky = spec.get("sticky") or {}
        if sticky.get("cookie") is not None:
            lb["sticky"] = {"cookie": self.cookie(sticky["cookie"])}
        st = spec.get("serversTransport")
        if st:
            lb["serversTransport"] = self.servers_transport_key(namespace, st,
                                                                path + ("serversTransport",))
        return {"loadBalancer": lb}

    @staticmethod
    def cookie(c):
        out = {k: v for k, v in c.items() if k in ("name", "secure", "httpOnly", "sameSite",
                                                   "maxAge", "domain", "path")}
        out.setdefault("path", "/")   # Traefik Cookie.SetDefaults
        return out

    def duration(self, value, default, path):
        if value is None or value == "":
            return default
        try:
            return parse_duration(value)
        except ValueError as e:
            raise RefError(str(e), path) from None

    def servers_transport_key(self, parent_ns, name, path):
        if not self.crd.allow_cross_namespace and name.endswith(SEPARATOR + PROVIDER):
            raise RefError("invalid reference to serversTransport %s: namespace-name@kubernetescrd "
                           "format is not allowed when crossnamespace is disallowed" % name, path)
        if SEPARATOR in name:
            return name
        return normalize(make_id(parent_ns, name))

    def load_servers(self, parent_ns, spec, path):
        namespace = spec.get("namespace") or parent_ns
        if not _is_namespace_allowed(self.crd.allow_cross_namespace, parent_ns, namespace):
            raise RefError("load balancer service %s/%s is not in the parent resource namespace "
                           "%s" % (spec.get("namespace", ""), spec.get("name"), parent_ns),
                           path + ("namespace",))
        name = spec.get("name", "")
        if name.endswith(SEPARATOR + PROVIDER):
            name = name[:-len(SEPARATOR + PROVIDER)]
        svc = self.store.get("Service", namespace, name)
        if svc is None:
            raise RefError("kubernetes service not found: %s/%s" % (namespace, name),
                           path + ("name",))
        svc_port = self.service_port(svc, spec.get("port"), path)
        svc_spec = svc.spec
        svc_type = svc_spec.get("type") or "ClusterIP"
        if svc_type != "ExternalName" and spec.get("healthCheck") is not None:
            raise RefError("healthCheck allowed only for ExternalName services: %s/%s"
                           % (namespace, name), path + ("healthCheck",))
        protocol = self.protocol(spec.get("scheme", ""), svc_port.get("name", ""),
                                 svc_port.get("port", 0), path)
        if svc_type == "ExternalName":
            if not self.crd.allow_external_name_services:
                raise RefError("externalName services not allowed: %s/%s (set "
                               "allowExternalNameServices to allow them)" % (namespace, name),
                               path + ("name",))
            return [{"url": "%s://%s" % (protocol, _join_host_port(
                svc_spec.get("externalName", ""), svc_port["port"]))}]
        native = spec.get("nativeLB")
        if native is None:
            native = self.crd.native_lb_by_default
        if native:
            cip = svc_spec.get("clusterIP", "")
            if cip == "None":
                raise RefError("getting native Kubernetes Service address: no clusterIP on "
                               "headless service: %s/%s" % (namespace, name), path + ("nativeLB",))
            if not cip:
                raise RefError("getting native Kubernetes Service address: no clusterIP found "
                               "for service: %s/%s" % (namespace, name), path + ("nativeLB",))
            return [{"url": "%s://%s" % (protocol, _join_host_port(cip, svc_port["port"]))}]
        if svc_type == "NodePort" and spec.get("nodePortLB"):
            raise RefError("nodePortLB needs Kubernetes Node objects, which pyroute does not "
                           "read", path + ("nodePortLB",))
        servers = []
        seen = set()
        for es in self.endpoint_slices(namespace, name):
            port = 0
            for p in es.get("ports") or ():
                if (p.get("name") or "") == (svc_port.get("name") or ""):
                    port = p.get("port") or 0
                    break
            if not port:
                continue
            for ep in es.get("endpoints") or ():
                cond = ep.get("conditions") or {}
                # Traefik k8s.EndpointServing: ready || serving (an unset condition is false).
                if not (cond.get("ready") is True or cond.get("serving") is True):
                    continue
                for address in ep.get("addresses") or ():
                    if address in seen:
                        continue
                    seen.add(address)
                    server = {"url": "%s://%s" % (protocol, _join_host_port(address, port))}
                    if cond.get("terminating") is True and cond.get("serving") is True:
                        server["fenced"] = True
                    servers.append(server)
        if not servers and not self.crd.allow_empty_services:
            raise RefError("no servers found for %s/%s (no ready endpoint in its EndpointSlices "
                           "or Endpoints for port %s; set allowEmptyServices to keep it)"
                           % (namespace, name, svc_port.get("name") or svc_port.get("port")),
                           path + ("name",))
        return servers

    def endpoint_slices(self, namespace, name):
        """EndpointSlice specs for a service; Endpoints are converted when there is no slice.

        Kubernetes mirrors a hand-written Endpoints object into EndpointSlices (the
        EndpointSliceMirroring controller), which is what Traefik v3 reads.
        """
        slices = self.store.slices.get((namespace, name))
        if slices:
            return [s.body for s in slices]
        ep = self.store.get("Endpoints", namespace, name)
        if ep is None:
            return []
        out = []
        for subset in ep.body.get("subsets") or ():
            ports = [{"name": p.get("name") or "", "port": p.get("port")}
                     for p in subset.get("ports") or ()]
            eps = [{"addresses": [a["ip"]], "conditions": {"ready": True, "serving": True}}
                   for a in subset.get("addresses") or ()]
            eps += [{"addresses": [a["ip"]], "conditions": {"ready": False, "serving": False}}
                    for a in subset.get("notReadyAddresses") or ()]
            out.append({"ports": ports, "endpoints": eps})
        return out

    @staticmethod
    def service_port(svc, port, path):
        if not _port_set(port):
            raise RefError("ingressRoute service port not defined", path + ("port",))
        ports = svc.spec.get("ports") or []
        has_valid = False
        for p in ports:
            if (isinstance(port, int) and port == p.get("port")) or (
                    isinstance(port, str) and port == p.get("name")):
                return p
            if p.get("port"):
                has_valid = True
        if (svc.spec.get("type") or "ClusterIP") != "ExternalName" or isinstance(port, str):
            known = ", ".join(str(p.get("name") or p.get("port")) for p in ports) or "none"
            raise RefError("service port not found: %s (ports of Service %s: %s)"
                           % (port, svc.ref, known), path + ("port",))
        del has_valid   # Traefik only logs a warning here
        return {"port": port, "name": ""}

    @staticmethod
    def protocol(scheme, port_name, port_number, path):
        # Traefik parseServiceProtocol
        if scheme in ("http", "https", "h2c"):
            return scheme
        if scheme == "":
            if port_number == 443 or (port_name or "").startswith("https"):
                return "https"
            return "http"
        raise RefError("invalid scheme %r specified" % scheme, path + ("scheme",))

    def build_services_lb(self, namespace, services, sticky, name, path, key="weighted"):
        wrr = []
        for j, svc in enumerate(services):
            full, k8s = self.name_and_service(namespace, svc, path + (j,))
            if k8s is not None:
                self.add_service(full, k8s)
            weight = svc.get("weight")
            wrr.append({"name": full, "weight": 1 if weight is None else weight})
        out = {"services": wrr}
        if sticky and sticky.get("cookie") is not None:
            out["sticky"] = {"cookie": self.cookie(sticky["cookie"])}
        return {key: out}

    def add_service(self, name, service, source=None):
        service.setdefault("status", "enabled")
        self.http["services"][qualified(name)] = service
        if source is not None:
            self.service_sources[qualified(name)] = source

    # -- IngressRoute ---------------------------------------------------------------------
    def should_process(self, obj):
        wanted = self.crd.ingress_class
        cls = obj.spec.get("ingressClassName") or (obj.metadata.get("annotations") or {}).get(
            "kubernetes.io/ingress.class", "")
        # Traefik shouldProcessIngress
        return wanted == cls or (not wanted and cls in ("", "traefik"))

    def ingress_routes(self):
        for obj in sorted(self.store.all("IngressRoute"), key=lambda o: (o.namespace, o.name)):
            if not self.should_process(obj):
                continue
            self.ingress_route(obj)

    def ingress_route(self, obj):
        self._current = obj
        spec = obj.spec
        ns = obj.namespace
        tls = spec.get("tls")
        if tls is not None and tls.get("secretName"):
            key = ns + "/" + tls["secretName"]
            if key not in self.tls_configs:
                try:
                    cert, priv = self.certificate_blocks(ns, tls["secretName"])
                    self.tls_configs[key] = {"certFile": cert, "keyFile": priv}
                except RefError as e:
                    self.err(obj, "Error configuring TLS: " + e.message,
                             ("spec", "tls", "secretName"))
        names = self.ingress_routers.setdefault((ns, obj.name), [])
        for i, route in enumerate(spec.get("routes") or ()):
            rpath = ("spec", "routes", i)
            match = route.get("match") or ""
            if route.get("kind") not in (None, "", "Rule"):
                self.err(obj, "Unsupported match kind: %s. Only \"Rule\" is supported for now."
                         % route.get("kind"), rpath + ("kind",))
                continue
            if not match:
                self.err(obj, "Empty match rule", rpath + ("match",))
                continue
            rname = normalize(make_id(ns, make_service_key(match, obj.name)))
            qname = qualified(rname)
            errors = []
            router = {}
            eps = list(spec.get("entryPoints") or ())
            router["entryPoints"] = eps
            mds = []
            try:
                mds = self.middleware_keys(ns, route.get("middlewares") or (), rpath)
            except RefError as e:
                errors.append(("Failed to create middleware keys: " + e.message, e.path))
            if mds:
                router["middlewares"] = [qualified(m) for m in mds]
            service_name = rname
            services = route.get("services") or []
            try:
                if len(services) > 1:
                    self.add_service(service_name, self.build_services_lb(
                        ns, services, None, service_name, rpath + ("services",)),
                        (obj, rpath + ("services",)))
                elif len(services) == 1:
                    full, lb = self.name_and_service(ns, services[0], rpath + ("services", 0))
                    if lb is not None:
                        self.add_service(service_name, lb, (obj, rpath + ("services", 0)))
                    else:
                        service_name = full
                else:
                    service_name = None
            except RefError as e:
                errors.append((e.message, e.path))
            if service_name is not None:
                router["service"] = service_name
            router["rule"] = match
            if route.get("priority"):
                router["priority"] = route["priority"]
            if route.get("syntax"):
                router["ruleSyntax"] = route["syntax"]
            if tls is not None:
                rtls = {}
                if tls.get("certResolver"):
                    rtls["certResolver"] = tls["certResolver"]
                if tls.get("domains"):
                    rtls["domains"] = tls["domains"]
                opts = tls.get("options") or {}
                if opts.get("name"):
                    oname = opts["name"]
                    ons = opts.get("namespace") or ""
                    if SEPARATOR not in oname:
                        ons = ons or ns
                        oname = make_id(ons, oname)
                    elif ons:
                        self.err(obj, "Namespace %r is ignored in cross-provider context" % ons,
                                 ("spec", "tls", "options", "namespace"), "warning")
                    if SEPARATOR not in opts["name"] and not _is_namespace_allowed(
                            self.crd.allow_cross_namespace, ns, ons):
                        errors.append(("TLSOption %s/%s is not in the IngressRoute namespace %s"
                                       % (ons, opts["name"], ns),
                                       ("spec", "tls", "options", "namespace")))
                    else:
                        rtls["options"] = oname
                router["tls"] = rtls
            obs = dict(route.get("observability") or {})
            for k in ("accessLogs", "metrics", "tracing"):
                obs.setdefault(k, True)   # Traefik applyDefaultObservabilityModel
            obs.setdefault("traceVerbosity", "minimal")
            router["observability"] = obs
            self.router_sources[qname] = RouteSource(obj, i)
            names.append(qname)
            self.set_router(qname, router, obj, errors)

    def set_router(self, qname, router, obj, errors):
        router["status"] = "enabled"
        if qname in self.http["routers"]:
            self.err(obj, "router %s is produced twice (same IngressRoute name and rule); the "
                     "later one replaces the earlier, as in Traefik" % qname, (), "warning")
        self.http["routers"][qname] = router
        for message, path in errors:
            self.disable(router, message)
            src = self.router_sources[qname]
            self.err(obj, message, src.path + tuple(path) if path and path[0] != "spec"
                     else tuple(path) or src.path)

    @staticmethod
    def disable(entry, message):
        entry["status"] = "disabled"
        entry.setdefault("error", [])
        if message not in entry["error"]:
            entry["error"].append(message)

    def middleware_keys(self, ns, middlewares, rpath):
        mds = []
        for k, mi in enumerate(middlewares):
            name = mi.get("name", "")
            mpath = rpath + ("middlewares", k)
            if not self.crd.allow_cross_namespace and name.endswith(SEPARATOR + PROVIDER):
                raise RefError("invalid reference to middleware %s: with crossnamespace "
                               "disallowed, the namespace field needs to be explicitly specified"
                               % name, mpath + ("name",))
            if SEPARATOR in name:
                mds.append(name)
                continue
            mns = ns
            if mi.get("namespace"):
                if not _is_namespace_allowed(self.crd.allow_cross_namespace, ns, mi["namespace"]):
                    raise RefError("middleware %s/%s is not in the IngressRoute namespace %s"
                                   % (mi["namespace"], name, ns), mpath + ("namespace",))
                mns = mi["namespace"]
            mds.append(normalize(make_id(mns, name)))
        return mds

    def parent_refs(self):
        """Multi-layer routing: a child IngressRoute's routers name their parents' routers."""
        for obj in self.store.all("IngressRoute"):
            refs = obj.spec.get("parentRefs")
            if not refs or not self.should_process(obj):
                continue
            parents = []
            problems = []
            for k, ref in enumerate(refs):
                pns = ref.get("namespace") or obj.namespace
                path = ("spec", "parentRefs", k)
                if not _is_namespace_allowed(self.crd.allow_cross_namespace, obj.namespace, pns):
                    problems.append(("parent IngressRoute %s/%s is not in the namespace %s (set "
                                     "allowCrossNamespace to allow it)"
                                     % (pns, ref.get("name"), obj.namespace), path))
                    continue
                names = self.ingress_routers.get((pns, ref.get("name")))
                if names is None:
                    problems.append(("parent IngressRoute %s/%s does not exist"
                                     % (pns, ref.get("name")), path + ("name",)))
                    continue
                parents.extend(names)
            if obj.spec.get("entryPoints"):
                self.err(obj, "a child IngressRoute (with parentRefs) must not set entryPoints: "
                         "it inherits its parents'", ("spec", "entryPoints"), "warning")
            for qname in self.ingress_routers.get((obj.namespace, obj.name), ()):
                router = self.http["routers"][qname]
                router["parentRefs"] = parents
                router.pop("entryPoints", None) if not obj.spec.get("entryPoints") else None
                for message, path in problems:
                    self.disable(router, message)
            for message, path in problems:
                self.err(obj, message, path)

    # -- Middleware -----------------------------------------------------------------------
    def middlewares(self):
        for obj in sorted(self.store.all("Middleware"), key=lambda o: (o.namespace, o.name)):
            mid = normalize(make_id(obj.namespace, obj.name))
            self._current = obj
            spec = obj.spec
            kinds = [k for k in spec if spec.get(k) is not None]
            if len(kinds) != 1:
                self.err(obj, "a Middleware must define exactly one middleware type (found %s)"
                         % (", ".join(kinds) or "none"), ("spec",))
                continue
            kind = kinds[0]
            try:
                conf = self.middleware_conf(obj, kind, spec[kind], mid)
            except RefError as e:
                path = e.path if e.path[:1] == ("spec",) else ("spec", kind) + e.path
                self.err(obj, e.message, path)
                entry = {kind: spec[kind], "status": "disabled", "error": [e.message]}
                self.http["middlewares"][qualified(mid)] = entry
                self.middleware_sources[qualified(mid)] = obj
                continue
            conf["status"] = "enabled"
            self.http["middlewares"][qualified(mid)] = conf
            self.middleware_sources[qualified(mid)] = obj

    def middleware_conf(self, obj, kind, conf, mid):
        ns = obj.namespace
        conf = dict(conf)
        if kind == "chain":
            mds = []
            for k, mi in enumerate(conf.get("middlewares") or ()):
                if SEPARATOR in mi.get("name", ""):
                    mds.append(mi["name"])
                    continue
                mns = mi.get("namespace") or ns
                # Traefik createChainMiddleware: makeID without Normalize.
                mds.append(qualified(make_id(mns, mi.get("name", ""))))
            return {"chain": {"middlewares": mds}}
        if kind in ("basicAuth", "digestAuth"):
            secret = conf.get("secret")
            if not secret:
                raise RefError("auth secret must be set", ("secret",))
            sobj = self.secret_object(ns, secret)
            data = self.secret_data(ns, secret)
            if data is None:
                raise RefError("secret '%s/%s' not found" % (ns, secret), ("secret",))
            if kind == "basicAuth" and sobj.body.get("type") == "kubernetes.io/basic-auth":
                if "username" not in data or "password" not in data:
                    raise RefError("failed to load basic auth credentials: secret '%s/%s' must "
                                   "contain both username and password keys" % (ns, secret),
                                   ("secret",))
                digest = base64.b64encode(hashlib.sha1(data["password"].encode()).digest())
                users = ["%s:{SHA}%s" % (data["username"], digest.decode())]
            else:
                if len(data) != 1:
                    raise RefError("failed to load %s credentials: found %d elements for secret "
                                   "'%s/%s', must be single element exactly"
                                   % ("basic auth" if kind == "basicAuth" else "digest auth",
                                      len(data), ns, secret), ("secret",))
                users = [line for line in next(iter(data.values())).splitlines() if line]
                if not users:
                    raise RefError("secret '%s/%s' does not contain any credentials"
                                   % (ns, secret), ("secret",))
            out = {"users": users}
            for k in ("realm", "removeHeader", "headerField"):
                if k in conf:
                    out[k] = conf[k]
            return {kind: out}
        if kind == "forwardAuth":
            if not conf.get("address"):
                raise RefError("forward authentication requires an address", ("address",))
            tls = conf.pop("tls", None)
            if tls is not None:
                out_tls = {"insecureSkipVerify": tls.get("insecureSkipVerify", False)}
                if tls.get("caSecret"):
                    try:
                        out_tls["ca"] = self.ca_blocks(ns, tls["caSecret"])
                    except RefError as e:
                        raise RefError("failed to load auth ca secret: " + e.message,
                                       ("tls", "caSecret")) from None
                if tls.get("certSecret"):
                    try:
                        out_tls["cert"], out_tls["key"] = self.certificate_blocks(
                            ns, tls["certSecret"])
                    except RefError as e:
                        raise RefError("failed to load auth secret: " + e.message,
                                       ("tls", "certSecret")) from None
                if "caOptional" in tls:
                    out_tls["caOptional"] = tls["caOptional"]
                conf["tls"] = out_tls
            return {"forwardAuth": conf}
        if kind == "errors":
            svc = conf.pop("service", None)
            if svc is not None:
                sname = mid + "-errorpage-service"
                lb = self.build_servers_lb(ns, svc, ("spec", "errors", "service"))
                self.add_service(sname, lb, (obj, ("spec", "errors", "service")))
                conf["service"] = sname
            return {"errors": conf}
        if kind == "rateLimit":
            out = {"average": conf.get("average", 0), "burst": conf.get("burst", 1),
                   "period": format_duration(self.duration(conf.get("period"), 1.0,
                                                           ("period",)))}
            for k in ("sourceCriterion", "redis"):
                if k in conf:
                    out[k] = conf[k]
            return {"rateLimit": out}
        if kind == "circuitBreaker":
            out = {"expression": conf.get("expression", "")}
            for k, d in (("checkPeriod", 0.1), ("fallbackDuration", 10.0),
                         ("recoveryDuration", 10.0)):
                out[k] = format_duration(self.duration(conf.get(k), d, (k,)))
            out["responseCode"] = conf.get("responseCode") or 503
            return {"circuitBreaker": out}
        if kind == "retry":
            out = {"attempts": conf.get("attempts", 0)}
            out["initialInterval"] = format_duration(self.duration(
                conf.get("initialInterval"), 0.0, ("initialInterval",)))
            return {"retry": out}
        if kind == "plugin":
            return {"plugin": self.plugin_secrets(ns, conf)}
        return {kind: conf}

    def plugin_secrets(self, ns, value):
        if isinstance(value, str):
            if not value.startswith("urn:k8s:secret:"):
                return value
            parts = value.split(":")
            if len(parts) != 5:
                raise RefError("malformed secret URN %r" % value)
            data = self.secret_data(ns, parts[3])
            if data is None:
                raise RefError("secret %s/%s is not found" % (ns, parts[3]))
            if parts[4] not in data:
                raise RefError("key %r not found in secret %s/%s" % (parts[4], ns, parts[3]))
            return data[parts[4]]
        if isinstance(value, list):
            return [self.plugin_secrets(ns, v) for v in value]
        if isinstance(value, dict):
            return {k: self.plugin_secrets(ns, v) for k, v in value.items()}
        return value

    # -- TraefikService -------------------------------------------------------------------
    def traefik_services(self):
        for obj in sorted(self.store.all("TraefikService"), key=lambda o: (o.namespace, o.name)):
            sid = normalize(make_id(obj.namespace, obj.name))
            self._current = obj
            spec = obj.spec
            try:
                if spec.get("weighted") is not None:
                    w = spec["weighted"]
                    svc = self.build_services_lb(obj.namespace, w.get("services") or [],
                                                 w.get("sticky"), sid,
                                                 ("spec", "weighted", "services"))
                elif spec.get("highestRandomWeight") is not None:
                    h = spec["highestRandomWeight"]
                    svc = self.build_services_lb(obj.namespace, h.get("services") or [], None,
                                                 sid, ("spec", "highestRandomWeight", "services"),
                                                 key="highestRandomWeight")
                elif spec.get("mirroring") is not None:
                    svc = self.mirroring(obj, spec["mirroring"])
                elif spec.get("failover") is not None:
                    svc = self.failover(obj, spec["failover"])
                else:
                    raise RefError("unspecified service type", ("spec",))
            except RefError as e:
                self.err(obj, "Error while building TraefikService: " + e.message, e.path)
                self.add_service(sid, {"status": "disabled",
                                       "error": ["Error while building TraefikService: "
                                                 + e.message]}, (obj, ()))
                continue
            self.add_service(sid, svc, (obj, ()))

    def mirroring(self, obj, m):
        main, k8s = self.name_and_service(obj.namespace, m, ("spec", "mirroring"))
        if k8s is not None:
            self.add_service(main, k8s)
        mirrors = []
        for j, mirror in enumerate(m.get("mirrors") or ()):
            mname, k8s = self.name_and_service(obj.namespace, mirror,
                                               ("spec", "mirroring", "mirrors", j))
            if k8s is not None:
                self.add_service(mname, k8s)
            entry = {"name": mname}
            if mirror.get("percent"):
                entry["percent"] = mirror["percent"]
            mirrors.append(entry)
        out = {"service": main, "mirrors": mirrors}
        out["mirrorBody"] = m.get("mirrorBody", True)
        if m.get("maxBodySize") is not None:
            out["maxBodySize"] = m["maxBodySize"]
        return {"mirroring": out}

    def failover(self, obj, f):
        out = {}
        for key in ("service", "fallback"):
            if f.get(key) is None:
                raise RefError("failover needs a %s" % key, ("spec", "failover", key))
            name, k8s = self.name_and_service(obj.namespace, f[key], ("spec", "failover", key))
            if k8s is not None:
                self.add_service(name, k8s)
            out[key] = name
        if f.get("errors") is not None:
            out["errors"] = f["errors"]
        return {"failover": out}

    # -- ServersTransport -----------------------------------------------------------------
    def servers_transports(self):
        for obj in sorted(self.store.all("ServersTransport"), key=lambda o: (o.namespace, o.name)):
            spec = obj.spec
            ns = obj.namespace
            root_cas = []
            if spec.get("rootCAsSecrets"):
                self.err(obj, "RootCAsSecrets option is deprecated, please use the RootCA option "
                         "instead.", ("spec", "rootCAsSecrets"), "warning")
            for k, secret in enumerate(spec.get("rootCAsSecrets") or ()):
                try:
                    root_cas.append(self.ca_blocks(ns, secret))
                except RefError as e:
                    self.err(obj, "Error while loading CA Secret: " + e.message,
                             ("spec", "rootCAsSecrets", k))
            for k, ca in enumerate(spec.get("rootCAs") or ()):
                try:
                    if ca.get("secret"):
                        root_cas.append(self.ca_blocks(ns, ca["secret"]))
                    elif ca.get("configMap"):
                        root_cas.append(self.ca_configmap(ns, ca["configMap"]))
                except RefError as e:
                    self.err(obj, "Error while loading CA: " + e.message, ("spec", "rootCAs", k))
            certs = []
            for k, secret in enumerate(spec.get("certificatesSecrets") or ()):
                try:
                    c, key = self.certificate_blocks(ns, secret)
                    certs.append({"certFile": c, "keyFile": key})
                except RefError as e:
                    self.err(obj, "Error while loading certificates %s: %s" % (secret, e.message),
                             ("spec", "certificatesSecrets", k))
            ft = spec.get("forwardingTimeouts") or {}
            timeouts = {}
            for key, default in (("dialTimeout", 30.0), ("responseHeaderTimeout", 0.0),
                                 ("idleConnTimeout", 90.0), ("readIdleTimeout", 0.0),
                                 ("pingTimeout", 15.0)):
                try:
                    timeouts[key] = format_duration(self.duration(ft.get(key), default, ()))
                except RefError as e:
                    self.err(obj, "Error while reading %s: %s" % (key, e.message),
                             ("spec", "forwardingTimeouts", key))
                    timeouts[key] = format_duration(default)
            st = {"forwardingTimeouts": timeouts}
            for key in ("serverName", "insecureSkipVerify", "disableHTTP2", "maxIdleConnsPerHost",
                        "peerCertURI", "spiffe"):
                if spec.get(key) not in (None, "", False, 0):
                    st[key] = spec[key]
            if root_cas:
                st["rootCAs"] = root_cas
            if certs:
                st["certificates"] = certs
            self.http["serversTransports"][qualified(normalize(make_id(ns, obj.name)))] = st

    # -- TLS ------------------------------------------------------------------------------
    def tls_options(self):
        defaults_in = []
        for obj in sorted(self.store.all("TLSOption"), key=lambda o: (o.namespace, o.name)):
            spec = obj.spec
            cas = []
            ca_auth = spec.get("clientAuth") or {}
            for k, secret in enumerate(ca_auth.get("secretNames") or ()):
                if self.store.get("Secret", obj.namespace, secret) is None:
                    self.err(obj, "Secret %s/%s does not exist" % (obj.namespace, secret),
                             ("spec", "clientAuth", "secretNames", k), "warning")
                    continue
                try:
                    cas.append(self.ca_blocks(obj.namespace, secret))
                except RefError as e:
                    self.err(obj, "Failed to extract CA from secret: " + e.message,
                             ("spec", "clientAuth", "secretNames", k))
            oid = make_id(obj.namespace, obj.name)
            if obj.name == DEFAULT_TLS:
                oid = DEFAULT_TLS
                defaults_in.append(obj)
            opt = {"alpnProtocols": list(spec.get("alpnProtocols") or ALPN_DEFAULT),
                   "cipherSuites": list(spec["cipherSuites"]) if spec.get("cipherSuites")
                   is not None else list(GO_CIPHER_SUITES)}
            for key in ("minVersion", "maxVersion", "curvePreferences", "sniStrict",
                        "disableSessionTickets"):
                if spec.get(key) not in (None, "", False, []):
                    opt[key] = spec[key]
            client_auth = {}
            if cas:
                client_auth["caFiles"] = cas
            if ca_auth.get("clientAuthType"):
                client_auth["clientAuthType"] = ca_auth["clientAuthType"]
            if client_auth:
                opt["clientAuth"] = client_auth
            self.tls["options"][oid if oid == DEFAULT_TLS else qualified(oid)] = opt
        if len(defaults_in) > 1:
            del self.tls["options"][DEFAULT_TLS]
            for obj in defaults_in:
                self.err(obj, "Default TLS Options defined in multiple namespaces: %s; none of "
                         "them is used" % ", ".join(o.namespace for o in defaults_in),
                         ("metadata", "name"))
        if DEFAULT_TLS not in self.tls["options"] and len(defaults_in) <= 1:
            # Traefik mergeConfiguration: DefaultTLSOptions when no provider defines "default".
            self.tls["options"][DEFAULT_TLS] = {"alpnProtocols": list(ALPN_DEFAULT),
                                                "minVersion": "VersionTLS12",
                                                "cipherSuites": list(GO_CIPHER_SUITES)}

    def tls_stores(self):
        defaults_in = []
        for obj in sorted(self.store.all("TLSStore"), key=lambda o: (o.namespace, o.name)):
            spec = obj.spec
            sid = make_id(obj.namespace, obj.name)
            if obj.name == DEFAULT_TLS:
                sid = DEFAULT_TLS
                defaults_in.append(obj)
            store = {}
            dc = spec.get("defaultCertificate")
            if dc is not None:
                try:
                    c, k = self.certificate_blocks(obj.namespace, dc.get("secretName", ""))
                except RefError as e:
                    self.err(obj, e.message, ("spec", "defaultCertificate", "secretName"))
                    continue
                store["defaultCertificate"] = {"certFile": c, "keyFile": k}
            if spec.get("defaultGeneratedCert") is not None:
                store["defaultGeneratedCert"] = spec["defaultGeneratedCert"]
            failed = False
            for k, cert in enumerate(spec.get("certificates") or ()):
                key = obj.namespace + "/" + cert.get("secretName", "")
                if key in self.tls_configs:
                    continue
                try:
                    c, pk = self.certificate_blocks(obj.namespace, cert.get("secretName", ""))
                except RefError as e:
                    self.err(obj, "Failed to load certificates: unable to read secret %s: %s"
                             % (key, e.message), ("spec", "certificates", k, "secretName"))
                    failed = True
                    break
                self.tls_configs[key] = {"certFile": c, "keyFile": pk, "stores": [sid]}
            if failed:
                continue
            self.tls["stores"][sid if sid == DEFAULT_TLS else qualified(sid)] = store
        if len(defaults_in) > 1:
            del self.tls["stores"][DEFAULT_TLS]
            for obj in defaults_in:
                self.err(obj, "Default TLS Stores defined in multiple namespaces: %s; none of "
                         "them is used" % ", ".join(o.namespace for o in defaults_in),
                         ("metadata", "name"))

    # -- runtime checks (Traefik's router/service managers) -------------------------------
    def check_services(self):
        services = self.http["services"]
        changed = True
        while changed:
            changed = False
            for name, svc in services.items():
                if svc.get("status") != "enabled":
                    continue
                for child in _children(svc):
                    q = qualified(child)
                    target = services.get(q)
                    problem = None
                    if target is None:
                        problem = "the service %r does not exist" % q
                    elif target.get("status") != "enabled":
                        problem = "the service %r is disabled" % q
                    if problem:
                        self.disable(svc, problem)
                        src = self.service_sources.get(name)
                        if src is not None:
                            self.err(src[0], "service %s: %s" % (name, problem), src[1])
                        changed = True
                        break
        # cycles: a service must not reach itself
        for name in list(services):
            if services[name].get("status") == "enabled" and _reaches(services, name, name):
                self.disable(services[name], "the service %r is part of a cycle" % name)
                src = self.service_sources.get(name)
                if src is not None:
                    self.err(src[0], "service %s is part of a reference cycle" % name, src[1])
        for name, svc in services.items():
            lb = svc.get("loadBalancer")
            if svc.get("status") == "enabled" and lb is not None and not lb["servers"]:
                src = self.service_sources.get(name)
                if src is not None:
                    self.err(src[0], "service %s has no servers: every request to it gets 503"
                             % name, src[1], "warning")

    def check_middlewares(self):
        mws = self.http["middlewares"]
        for name, mw in mws.items():
            if mw.get("status") != "enabled":
                continue
            chain = (mw.get("chain") or {}).get("middlewares") or ()
            for child in chain:
                q = qualified(child)
                if q not in mws:
                    msg = "middleware %r does not exist" % q
                    self.disable(mw, msg)
                    obj = self.middleware_sources[name]
                    self.err(obj, msg, ("spec", "chain", "middlewares"))
            es = mw.get("errors")
            if es and es.get("service") and qualified(es["service"]) not in self.http["services"]:
                self.disable(mw, "the service %r does not exist" % qualified(es["service"]))

    def check_routers(self):
        eps_known = self.static.entry_points
        default_eps = self.static.default_entry_points()
        for name, router in self.http["routers"].items():
            src = self.router_sources[name]
            obj, rpath = src.obj, src.path
            problems = []
            if "parentRefs" not in router:
                if not router.get("entryPoints"):
                    router["entryPoints"] = list(default_eps)
                missing = [ep for ep in router["entryPoints"] if ep not in eps_known]
                for ep in missing:
                    self.err(obj, "entryPoint %r doesn't exist (known: %s)"
                             % (ep, ", ".join(eps_known)), ("spec", "entryPoints"))
                if missing and len(missing) == len(router["entryPoints"]):
                    self.disable(router, "no valid entryPoint for this router")
            svc = router.get("service")
            if svc is not None and router.get("status") == "enabled":
                q = qualified(svc)
                target = self.http["services"].get(q)
                if target is None:
                    problems.append(("the service %r does not exist" % q, ("services",)))
                elif target.get("status") != "enabled":
                    problems.append(("the service %r is disabled: %s" % (
                        q, "; ".join(target.get("error", []))), ("services",)))
            elif not self._has_children(name) and router.get("status") == "enabled":
                problems.append(("the router has no service", ()))
            for k, mw in enumerate(router.get("middlewares") or ()):
                target = self.http["middlewares"].get(mw)
                if target is None:
                    problems.append(("middleware %r does not exist" % mw, ("middlewares", k)))
                elif target.get("status") != "enabled":
                    problems.append(("middleware %r is disabled: %s" % (
                        mw, "; ".join(target.get("error", []))), ("middlewares", k)))
            tls = router.get("tls")
            if tls is not None and tls.get("options"):
                opt = tls["options"]
                qopt = opt if opt == DEFAULT_TLS else qualified(opt)
                if qopt not in self.tls["options"]:
                    problems.append(("unknown TLS options: %s" % qopt, None))
            rule_error = check_rule(router["rule"], router.get("ruleSyntax", ""))
            if rule_error is not None:
                problems.append((rule_error, ("match",)))
            for message, path in problems:
                if message in router.get("error", ()):
                    continue
                self.disable(router, message)
                fpath = ("spec", "tls", "options") if path is None else rpath + tuple(path)
                self.err(obj, message, fpath)

    def _has_children(self, qname):
        for r in self.http["routers"].values():
            if qname in (r.get("parentRefs") or ()):
                return True
        return False

    def certificates(self):
        self.tls["certificates"] = [self.tls_configs[k] for k in sorted(self.tls_configs)]

    def run(self):
        self._current = None
        self.tls_stores()
        self.tls_options()
        self.middlewares()
        self.ingress_routes()
        self.parent_refs()
        self.traefik_services()
        self.servers_transports()
        self.certificates()
        self.check_services()
        self.check_middlewares()
        self.check_routers()
        return {"http": self.http, "tls": self.tls}


def _children(svc):
    for key in ("weighted", "highestRandomWeight"):
        if key in svc:
            for s in svc[key].get("services") or ():
                yield s["name"]
    if "mirroring" in svc:
        yield svc["mirroring"]["service"]
        for m in svc["mirroring"].get("mirrors") or ():
            yield m["name"]
    if "failover" in svc:
        yield svc["failover"]["service"]
        yield svc["failover"]["fallback"]


def _reaches(services, start, target, seen=None):
    seen = set() if seen is None else seen
    for child in _children(services[start]):
        q = qualified(child)
        if q == target:
            return True
        if q in services and q not in seen:
            seen.add(q)
            if _reaches(services, q, target, seen):
                return True
    return False


def _join_host_port(host, port):
    # Go net.JoinHostPort: brackets around hosts containing ':' (IPv6)
    if ":" in host:
        return "[%s]:%s" % (host, port)
    return "%s:%s" % (host, port)


def resolve(objects, static):
    """(dynamic, errors, resolver) for already-validated objects."""
    r = Resolver(objects, static)
    dynamic = r.run()
    return dynamic, r.errors, r
