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
            # Traefik's provider builds every kind the spec sets (in this order, the first
            # problem drops the Middleware); its runtime then refuses zero or several kinds.
            conf = {}
            failed = None
            for kind in sorted(kinds, key=_build_order):
                try:
                    conf.update(self.middleware_conf(obj, kind, spec[kind], mid))
                except RefError as e:
                    failed = (kind, e)
                    break
            if failed is not None:
                kind, e = failed
                path = e.path if e.path[:1] == ("spec",) else ("spec", kind) + e.path
                self.err(obj, e.message, path)
                entry = {kind: spec[kind], "status": "disabled", "error": [e.message]}
                self.http["middlewares"][qualified(mid)] = entry
                self.middleware_sources[qualified(mid)] = obj
                continue
            conf["status"] = "enabled"
            if len(kinds) != 1:
                # Traefik's middleware builder: "multi-types middleware not supported" /
                # "middleware ... does not exist" for none
                message = ("cannot create middleware: multi-types middleware not supported, "
                           "consider declaring two different pieces of middleware instead"
                           if kinds else "cannot create middleware: no middleware type defined")
                self.disable(conf, message)
                self.err(obj, message + (" (found %s)" % ", ".join(kinds) if kinds else ""),
                         ("spec",))
            else:
                # Traefik's own refusals (the middleware is not built) and deprecations
                kind = kinds[0]
                for severity, field, message in mw_check(kind, conf.get(kind)):
                    path = ("spec", kind) + (tuple(field.split(".")) if field else ())
                    self.err(obj, message, path, severity)
                    if severity == "error":
                        self.disable(conf, message)
            self.http["middlewares"][qualified(mid)] = conf
            self.middleware_sources[qualified(mid)] = obj

    def middleware_conf(self, obj, kind, conf, mid):
        ns = obj.namespace
        conf = dict(conf)
        if kind == "chain":
            # Traefik createChainMiddleware: each member through resolveReference (v3.7:
            # normalised, namespace isolation and crossProviderNamespaces applied)
            mds = []
            for k, mi in enumerate(conf.get("middlewares") or ()):
                try:
                    mds.append(qualified(self.resolve_reference(
                        ns, mi.get("namespace") or "", mi.get("name", ""), ("middlewares", k))))
                except RefError as e:
                    raise RefError("Error while reading chain middleware: invalid reference to "
                                   "middleware %s: %s" % (mi.get("name", ""), e.message),
                                   e.path) from None
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
                # bufio.Scanner's lines: split at "\n", one trailing "\r" dropped, empty skipped
                users = [line[:-1] if line.endswith("\r") else line
                         for line in next(iter(data.values())).split("\n")]
                users = [line for line in users if line]
                if not users:
                    raise RefError("failed to load %s credentials: secret '%s/%s' does not "
                                   "contain any credentials"
                                   % ("basic auth" if kind == "basicAuth" else "digest auth",
                                      ns, secret), ("secret",))
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
            conf.setdefault("maxBodySize", -1)   # Traefik ForwardAuth.SetDefaults
            return {"forwardAuth": conf}
        if kind == "errors":
            # Traefik createErrorPageMiddleware: the service goes through nameAndService; a
            # Kubernetes Service becomes "<middleware>-errorpage-service", a TraefikService is
            # named as any reference to it
            svc = conf.pop("service", None) or {}
            name, lb = self.name_and_service(ns, svc, ("service",))
            if lb is not None:
                name = mid + "-errorpage-service"
                self.add_service(name, lb, (obj, ("spec", "errors", "service")))
            out = {k: conf[k] for k in ("status", "statusRewrites", "query",
                                        "errorRequestHeaders") if k in conf}
            out["service"] = name
            return {"errors": out}
        if kind == "rateLimit":
            return {"rateLimit": self.rate_limit(ns, conf)}
        if kind == "circuitBreaker":
            out = {"expression": conf.get("expression", "")}
            for k, d in (("checkPeriod", 0.1), ("fallbackDuration", 10.0),
                         ("recoveryDuration", 10.0)):
                out[k] = format_duration(self.duration(conf.get(k), d, (k,)))
            out["responseCode"] = conf.get("responseCode") or 503
            return {"circuitBreaker": out}
        if kind == "retry":
            # Traefik createRetryMiddleware + Retry.SetDefaults
            out = {k: conf[k] for k in ("attempts", "status", "disableRetryOnNetworkError",
                                        "retryNonIdempotentMethod") if k in conf}
            out.setdefault("attempts", 0)
            for k in ("initialInterval", "timeout"):
                out[k] = format_duration(self.duration(conf.get(k), 0.0, (k,)))
            out["maxRequestBodyBytes"] = conf.get("maxRequestBodyBytes", 2 * 1024 * 1024)
            return {"retry": out}
        if kind == "compress":
            # Traefik createCompressMiddleware + Compress.SetDefaults
            out = dict(conf)
            if out.get("encodings") is None:
                out["encodings"] = ["gzip", "br", "zstd"]
            return {"compress": out}
        if kind == "plugin":
            return {"plugin": self.plugin_secrets(ns, conf)}
        return {kind: conf}

    def rate_limit(self, ns, conf):
        """Traefik createRateLimitMiddleware (RateLimit and Redis SetDefaults, Secrets read)."""
        out = {"average": conf.get("average", 0), "burst": conf.get("burst", 1),
               "period": format_duration(self.duration(conf.get("period"), 1.0, ("period",),
                                                        allow_negative=True))}
        if "sourceCriterion" in conf:
            out["sourceCriterion"] = conf["sourceCriterion"]
        redis = conf.get("redis")
        if redis is None:
            return out
        r = {k: redis[k] for k in ("db", "poolSize", "minIdleConns", "maxActiveConns")
             if k in redis}
        r["endpoints"] = list(redis.get("endpoints") or ()) or ["localhost:6379"]
        tls = redis.get("tls")
        if tls is not None:
            rtls = {"insecureSkipVerify": tls.get("insecureSkipVerify", False)}
            if tls.get("caSecret"):
                try:
                    rtls["ca"] = self.ca_blocks(ns, tls["caSecret"])
                except RefError as e:
                    raise RefError("failed to load auth ca secret: " + e.message,
                                   ("redis", "tls", "caSecret")) from None
            if tls.get("certSecret"):
                try:
                    rtls["cert"], rtls["key"] = self.certificate_blocks(ns, tls["certSecret"])
                except RefError as e:
                    raise RefError("failed to load auth secret: " + e.message,
                                   ("redis", "tls", "certSecret")) from None
            r["tls"] = rtls
        for k, default in (("dialTimeout", 5.0), ("readTimeout", 3.0), ("writeTimeout", 3.0)):
            r[k] = format_duration(self.duration(redis.get(k), default, ("redis", k)))
        if redis.get("secret"):
            data = self.secret_data(ns, redis["secret"])
            if data is None:
                raise RefError("secret '%s/%s' not found" % (ns, redis["secret"]),
                               ("redis", "secret"))
            if "username" not in data or "password" not in data:
                raise RefError("secret '%s/%s' must contain both username and password keys"
                               % (ns, redis["secret"]), ("redis", "secret"))
            r["username"], r["password"] = data["username"], data["password"]
        out["redis"] = r
        return out

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


# Traefik loadConfigurationFromCRD reads a Middleware's kinds in this order; the first that
# fails drops the Middleware.
_ORDER = ("basicAuth", "digestAuth", "forwardAuth", "errors", "plugin", "rateLimit", "retry",
          "circuitBreaker", "chain")


def _build_order(kind):
    return _ORDER.index(kind) if kind in _ORDER else -1
