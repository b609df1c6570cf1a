"""Middleware objects -> ``http.middlewares``, as Traefik's CRD provider builds them.

Specs pass through in Traefik's camelCase; the kinds that read Secrets or build services
(basicAuth, digestAuth, forwardAuth, errors, plugin) and those with defaults (rateLimit,
circuitBreaker, retry) are converted like kubernetes.go's create*Middleware functions.
"""
import base64
import hashlib

from ..middlewares import check as mw_check
from .common import RefError
from .names import SEPARATOR, format_duration, make_id, normalize, qualified

__all__ = ["MiddlewaresMixin"]


class MiddlewaresMixin:
    """Resolver part: ``http.middlewares``."""

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
            # Traefik's own refusals (the middleware is not built) and deprecations
            refused = []
            for severity, field, message in mw_check(kind, conf.get(kind)):
                path = ("spec", kind) + (tuple(field.split(".")) if field else ())
                self.err(obj, message, path, severity)
                if severity == "error":
                    refused.append(message)
            if refused:
                conf["status"] = "disabled"
                conf["error"] = refused
            else:
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
