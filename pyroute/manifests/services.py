"""Services: Kubernetes Service -> servers, TraefikService trees, ServersTransports.

Mirrors Traefik's kubernetes_http.go (nameAndService, fullServiceName, buildServersLB,
loadServers, buildServicesLB, buildMirroring, parseServiceProtocol) and the ServersTransport
part of kubernetes.go.
"""
from ..static import parse_duration
from .common import (RefError, is_cross_provider_namespace_allowed, is_namespace_allowed,
                     join_host_port, port_set)
from .names import (PROVIDER, SEPARATOR, format_duration, make_id, normalize, qualified,
                    split_provider)

__all__ = ["ServicesMixin"]


class ServicesMixin:
    """Resolver part: everything that ends up in ``http.services`` and ``serversTransports``."""

    def name_and_service(self, parent_ns, spec, path):
        """Traefik nameAndService: (full name, service dict or None for a TraefikService)."""
        name = spec.get("name", "")
        namespace = spec.get("namespace") or parent_ns
        if SEPARATOR not in name and not is_namespace_allowed(self.crd.allow_cross_namespace,
                                                              parent_ns, namespace):
            raise RefError("service %s/%s not in the parent resource namespace %s (set "
                           "allowCrossNamespace to allow it)"
                           % (spec.get("namespace", ""), name, parent_ns), path + ("namespace",))
        if SEPARATOR in name and not is_cross_provider_namespace_allowed(
                self.crd.cross_provider_namespaces, parent_ns):
            raise RefError("service %r reference is not allowed: namespace %r is not in "
                           "crossProviderNamespaces" % (name, parent_ns), path + ("name",))
        kind = spec.get("kind") or "Service"
        if kind == "Service":
            lb = self.build_servers_lb(namespace, spec, path)
            if spec.get("middlewares"):
                # Service-level middlewares (run after the router's), named like a route's,
                # relative to the Service's namespace (Traefik buildServersLB: svc.Namespace)
                try:
                    lb["middlewares"] = [qualified(m) for m in self.middleware_keys(
                        namespace if SEPARATOR not in name else parent_ns,
                        spec["middlewares"], path)]
                except RefError as e:
                    raise RefError("could not create middleware keys: " + e.message,
                                   e.path) from None
            return self.full_service_name(namespace, spec, spec.get("port")), lb
        if kind == "TraefikService":
            full = self.full_service_name(namespace, spec, 0)
            return full, None
        raise RefError("unsupported service kind %s" % kind, path + ("kind",))

    def full_service_name(self, namespace, spec, port):
        name = spec.get("name", "")
        if port_set(port):
            return normalize("%s-%s-%s" % (namespace, name, str(port)))
        if SEPARATOR not in name:
            return normalize("%s-%s" % (namespace, name))
        base, provider = split_provider(name)
        if provider == PROVIDER:
            return normalize("%s-%s" % (namespace, base))
        if spec.get("namespace") and self._current is not None:
            self.err(self._current, "namespace %r is ignored in cross-provider context"
                     % spec["namespace"], (), "warning")
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
            # Traefik buildServersLB: SetDefaults sets mode "http", then any mode other than
            # "http" is copied over it, an unset one ("") included (the health checker probes
            # HTTP for anything but grpc)
            if hc.get("mode") in (None, ""):
                hc.pop("mode", None)
            if hc.get("scheme") not in (None, "", "http", "https") and not (
                    hc.get("mode") == "grpc" and hc.get("scheme") == "h2c"):
                raise RefError("healthCheck scheme %r is not supported (http or https)"
                               % hc["scheme"], path + ("healthCheck", "scheme"))
            lb["healthCheck"] = hc
        if spec.get("passiveHealthCheck") is not None:
            p = spec["passiveHealthCheck"]
            lb["passiveHealthCheck"] = {
                "maxFailedAttempts": p.get("maxFailedAttempts", 1),
                "failureWindow": format_duration(self.duration(
                    p.get("failureWindow"), 10.0, path + ("passiveHealthCheck", "failureWindow")))}
        pass_host = spec.get("passHostHeader")
        lb["passHostHeader"] = True if pass_host is None else pass_host
        # Traefik ResponseForwarding: flushInterval defaults to 100ms; a negative value means
        # "flush after every write" (ptypes.Duration: a bare number is seconds, "-1" = -1s).
        # pyroute writes every read from the backend to the client at once, which meets any
        # interval (the bytes are never held back for longer), so the value is validated and
        # kept in the dynamic configuration, and nothing per request depends on it.
        flush = 0.1
        rf = spec.get("responseForwarding") or {}
        if rf.get("flushInterval"):
            try:
                raw = rf["flushInterval"]
                negative = isinstance(raw, str) and raw.strip().startswith("-")
                flush = parse_duration(raw.strip()[1:] if negative else raw)
                flush = -flush if negative else flush
            except ValueError as e:
                raise RefError("unable to parse flushInterval: %s" % e,
                               path + ("responseForwarding", "flushInterval")) from None
        lb["responseForwarding"] = {"flushInterval": format_duration(flush)}
        sticky = spec.get("sticky") or {}
        if sticky.get("cookie") is not None:
            lb["sticky"] = {"cookie": self.cookie(sticky["cookie"])}
        st = spec.get("serversTransport")
        if st:
            # Qualified, as Traefik's service manager rewrites it (and its API shows it).
            lb["serversTransport"] = qualified(self.servers_transport_key(
                namespace, st, path + ("serversTransport",)))
        return {"loadBalancer": lb}

    @staticmethod
    def cookie(c):
        out = {k: v for k, v in c.items() if k in ("name", "secure", "httpOnly", "sameSite",
                                                   "maxAge", "domain", "path")}
        out.setdefault("path", "/")   # Traefik Cookie.SetDefaults
        return out

    def duration(self, value, default, path, allow_negative=False):
        if value is None or value == "":
            return default
        try:
            return parse_duration(value, allow_negative)
        except ValueError as e:
            raise RefError(str(e), path) from None

    def servers_transport_key(self, parent_ns, name, path):
        if not self.crd.allow_cross_namespace and name.endswith(SEPARATOR + PROVIDER):
            raise RefError("invalid reference to serversTransport %s: namespace-name@kubernetescrd "
                           "format is not allowed when crossnamespace is disallowed" % name, path)
        if SEPARATOR in name:
            if not is_cross_provider_namespace_allowed(self.crd.cross_provider_namespaces,
                                                       parent_ns):
                raise RefError("serversTransport %r reference is not allowed: namespace %r is "
                               "not in crossProviderNamespaces" % (name, parent_ns), path)
            return name
        return normalize(make_id(parent_ns, name))

    def load_servers(self, parent_ns, spec, path):
        # Many routes share a backend: the servers of one (Service, port, scheme, mode) are
        # computed once per load (errors are raised again from the cache, with this path).
        key = (parent_ns, spec.get("namespace"), spec.get("name"), spec.get("port"),
               spec.get("scheme"), spec.get("nativeLB"), spec.get("nodePortLB"),
               spec.get("healthCheck") is not None)
        hit = self._servers_cache.get(key)
        if hit is None:
            try:
                hit = (self._load_servers(parent_ns, spec, ()), None)
            except RefError as e:
                hit = (None, e)
            self._servers_cache[key] = hit
        servers, err = hit
        if err is not None:
            raise RefError(err.message, path + err.path)
        return [dict(s) for s in servers]

    def _load_servers(self, parent_ns, spec, path):
        namespace = spec.get("namespace") or parent_ns
        if not is_namespace_allowed(self.crd.allow_cross_namespace, parent_ns, namespace):
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
            return [{"url": "%s://%s" % (protocol, join_host_port(
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
            return [{"url": "%s://%s" % (protocol, join_host_port(cip, svc_port["port"]))}]
        if svc_type == "NodePort" and spec.get("nodePortLB"):
            return self.node_port_servers(namespace, name, svc_port, protocol, path)
        servers = []
        seen = set()
        for es in self.endpoint_slices(namespace, name):
            port = 0
            for p in es.get("ports") or ():
                # Traefik: p.Name != nil && svcPort.Name == *p.Name (a slice port without a
                # name matches nothing; the EndpointSlice controller always writes one)
                if p.get("name") is not None and p["name"] == (svc_port.get("name") or ""):
                    port = p.get("port") or 0
                    break
            if not port:
                continue
            for ep in es.get("endpoints") or ():
                cond = ep.get("conditions") or {}
                # Traefik loadServers: the serving condition decides, an unset one counts as
                # true (Kubernetes: "nil should be interpreted as true")
                if cond.get("serving") is False:
                    continue
                for address in ep.get("addresses") or ():
                    if address in seen:
                        continue
                    seen.add(address)
                    server = {"url": "%s://%s" % (protocol, join_host_port(address, port))}
                    if cond.get("terminating") is True:
                        server["fenced"] = True
                    servers.append(server)
        if not servers and not self.crd.allow_empty_services:
            raise RefError("no servers found for %s/%s (no serving endpoint in its "
                           "EndpointSlices or Endpoints for port %s, whose EndpointSlice port "
                           "must be named %r; set allowEmptyServices to keep it)"
                           % (namespace, name, svc_port.get("name") or svc_port.get("port"),
                              svc_port.get("name") or ""), path + ("name",))
        return servers

    def node_port_servers(self, namespace, name, svc_port, protocol, path):
        """Traefik loadServers for ``nodePortLB`` on a NodePort Service: every node's
        InternalIP with the port's nodePort (Node objects read from the manifests)."""
        if self.crd.disable_cluster_scope_resources:
            raise RefError("nodes lookup is disabled (disableClusterScopeResources)",
                           path + ("nodePortLB",))
        nodes = sorted(self.store.all("Node"), key=lambda o: o.name)
        if not nodes:
            raise RefError("nodes not found for NodePort service %s/%s" % (namespace, name),
                           path + ("nodePortLB",))
        servers = []
        for node in nodes:
            for addr in (node.body.get("status") or {}).get("addresses") or ():
                if addr.get("type") == "InternalIP":
                    servers.append({"url": "%s://%s" % (protocol, join_host_port(
                        addr.get("address", ""), svc_port.get("nodePort") or 0))})
        if not servers:
            raise RefError("no servers were generated for service %s in namespace" % name,
                           path + ("nodePortLB",))
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
        if not port_set(port):
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

    def build_services_lb(self, namespace, services, sticky, name, path, key="weighted",
                          health=None):
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
        if health is not None:
            out["healthCheck"] = {}
        return {key: out}

    def status_extension(self, obj, spec, part):
        """``healthCheck: {}`` of a weighted/highestRandomWeight/failover TraefikService: the
        service reports its children's status to its parents (Traefik's dynamic
        configuration has it; Traefik's CRD does not, so it is a pyroute extension)."""
        if spec.get("healthCheck") is None:
            return None
        self.err(obj, "healthCheck on a %s TraefikService is a pyroute extension: Traefik's "
                 "CRD has no such field (Traefik sets it from its File provider only)" % part,
                 ("spec", part, "healthCheck"), "warning")
        return {}

    def add_service(self, name, service, source=None):
        service.setdefault("status", "enabled")
        self.http["services"][qualified(name)] = service
        if source is not None:
            self.service_sources[qualified(name)] = source

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
                                                 ("spec", "weighted", "services"),
                                                 health=self.status_extension(obj, w,
                                                                              "weighted"))
                elif spec.get("highestRandomWeight") is not None:
                    h = spec["highestRandomWeight"]
                    svc = self.build_services_lb(obj.namespace, h.get("services") or [], None,
                                                 sid, ("spec", "highestRandomWeight", "services"),
                                                 key="highestRandomWeight",
                                                 health=self.status_extension(
                                                     obj, h, "highestRandomWeight"))
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
        if m.get("mirrorBody") is not None:   # absent: Traefik's default (true)
            out["mirrorBody"] = m["mirrorBody"]
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
        health = self.status_extension(obj, f, "failover")
        if health is not None:
            out["healthCheck"] = health
        return {"failover": out}

    def transport_tls_versions(self, obj, spec):
        """cipherSuites, minVersion, maxVersion of a ServersTransport, checked as Traefik's
        provider checks them (an unknown suite drops the list, an unknown version is ignored,
        min >= max falls back to VersionTLS12 and no maximum)."""
        from ..tls import CIPHER_SUITES, VERSIONS
        out = {}
        suites = spec.get("cipherSuites")
        if suites is not None:
            unknown = [c for c in suites if c not in CIPHER_SUITES]
            if unknown:
                self.err(obj, "cipher suite not supported: %s, falling back to default "
                         "CipherSuite." % unknown[0], ("spec", "cipherSuites"))
            elif suites:
                out["cipherSuites"] = list(suites)
        order = ("VersionTLS10", "VersionTLS11", "VersionTLS12", "VersionTLS13")
        for key, label in (("minVersion", "minimum"), ("maxVersion", "maximum")):
            value = spec.get(key) or ""
            if value and value not in VERSIONS:
                self.err(obj, "invalid TLS %s version: %s" % (label, value), ("spec", key))
            elif value:
                out[key] = value
        if spec.get("minVersion") and spec.get("maxVersion") and \
                spec["minVersion"] in VERSIONS and spec["maxVersion"] in VERSIONS and \
                order.index(spec["minVersion"]) >= order.index(spec["maxVersion"]):
            self.err(obj, "CipherSuite MinVersion, %s, above or equal to the MaxVersion, %s. "
                     "Falling back to default MaxVersion and MinVersion"
                     % (spec["minVersion"], spec["maxVersion"]), ("spec", "minVersion"))
            out["minVersion"] = "VersionTLS12"
            out.pop("maxVersion", None)
        return out

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
                        "peerCertURI", "peerCertSANs", "spiffe"):
                if spec.get(key) not in (None, "", False, 0, []):
                    st[key] = spec[key]
            st.update(self.transport_tls_versions(obj, spec))
            if root_cas:
                st["rootCAs"] = root_cas
            if certs:
                st["certificates"] = certs
            self.http["serversTransports"][qualified(normalize(make_id(ns, obj.name)))] = st
