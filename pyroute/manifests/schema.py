"""Validating objects against the CRDs' OpenAPI schemas (and the core kinds pyroute reads).

Traefik kinds use the JSON schemas generated from Traefik's CRD definitions by
``scripts/gen_schemas.py`` (package data ``pyroute/schemas/*.json``). Core kinds (Service,
Endpoints, EndpointSlice, Secret, ConfigMap) are checked against the small schemas below, which
cover only the fields pyroute reads and let everything else through.
"""
import json
from importlib import resources

import fastjsonschema
import jsonschema

from .source import field_path

__all__ = ["validate"]

_INT_OR_STRING = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}

# Core kinds: the API server's strict field validation (what ``kubectl apply`` does by default)
# refuses a field its type does not have: ``unknown field "spec.ports[0].targetport"``. The
# field sets below are the Kubernetes API's (core/v1, discovery/v1) for every object pyroute
# reads, down to the structures it reads; deeper structures it ignores are left open.


def _strict(properties, **extra):
    return dict({"type": "object", "properties": properties, "additionalProperties": False},
                **extra)


_OPEN = {}
_OBJECT_META = _strict({k: _OPEN for k in (
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields")})


def _top(properties, **extra):
    props = {"apiVersion": _OPEN, "kind": _OPEN, "metadata": _OBJECT_META}
    props.update(properties)
    return _strict(props, **extra)


_ENDPOINT_ADDRESS = _strict({"ip": _STR, "hostname": _OPEN, "nodeName": _OPEN,
                             "targetRef": _OPEN}, required=["ip"])

CORE = {
    "Service": _top({"status": _OPEN, "spec": _strict({
        "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]},
        "clusterIP": _STR,
        "externalName": _STR,
        "ports": {"type": "array", "items": _strict({
            "name": _STR,
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "targetPort": _INT_OR_STRING,
            "nodePort": {"type": "integer"},
            "appProtocol": _OPEN,
            "protocol": {"enum": ["TCP", "UDP", "SCTP"]}}, required=["port"])},
        **{k: _OPEN for k in (
            "selector", "clusterIPs", "externalIPs", "sessionAffinity", "loadBalancerIP",
            "loadBalancerSourceRanges", "externalTrafficPolicy", "healthCheckNodePort",
            "publishNotReadyAddresses", "sessionAffinityConfig", "ipFamilies", "ipFamilyPolicy",
            "allocateLoadBalancerNodePorts", "loadBalancerClass", "internalTrafficPolicy",
            "trafficDistribution")}})}),
    "Endpoints": _top({"subsets": {"type": "array", "items": _strict({
        "addresses": {"type": "array", "items": _ENDPOINT_ADDRESS},
        "notReadyAddresses": {"type": "array", "items": _ENDPOINT_ADDRESS},
        "ports": {"type": "array", "items": _strict({
            "name": _STR, "port": {"type": "integer"}, "protocol": _OPEN, "appProtocol": _OPEN},
            required=["port"])},
    })}}),
    "EndpointSlice": _top({
        "addressType": {"enum": ["IPv4", "IPv6", "FQDN"]},
        "endpoints": {"type": "array", "items": _strict({
            "addresses": {"type": "array", "items": _STR, "minItems": 1},
            "conditions": _strict({"ready": _BOOL, "serving": _BOOL, "terminating": _BOOL}),
            **{k: _OPEN for k in ("hostname", "targetRef", "nodeName", "zone", "hints",
                                  "deprecatedTopology")}}, required=["addresses"])},
        "ports": {"type": "array", "items": _strict({
            "name": _STR, "port": {"type": "integer"}, "protocol": _STR, "appProtocol": _OPEN})},
    }, required=["addressType"]),
    "Secret": _top({"type": _STR, "data": _STRMAP, "stringData": _STRMAP, "immutable": _OPEN}),
    "ConfigMap": _top({"data": _STRMAP, "binaryData": _OPEN, "immutable": _OPEN}),
    # Node (v1): pyroute reads status.addresses (nodePortLB); Kubernetes' other fields
    # (spec, the rest of status) are left open
    "Node": _top({"spec": _OPEN, "status": {"type": "object", "properties": {
        "addresses": {"type": "array", "items": _strict({"type": _STR, "address": _STR},
                                                       required=["type", "address"])}}}}),
}

_schemas = {}
_validators = {}
_gates = {}


def _schema(kind):
    schema = _schemas.get(kind)
    if schema is None:
        if kind in CORE:
            schema = CORE[kind]
        else:
            text = resources.files("pyroute").joinpath("schemas", kind + ".json").read_text()
            schema = json.loads(text)
        _schemas[kind] = schema
    return schema


def _validator(kind):
    """jsonschema's validator: the reference, and the source of every error message."""
    v = _validators.get(kind)
    if v is None:
        schema = _schema(kind)
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        v = _validators[kind] = cls(schema)
    return v


def _gate(kind):
    """fastjsonschema's compiled check of the same schema: a fast "valid?" for the common case.

    It only decides that an object is valid; whenever it objects, jsonschema re-checks and
    words the errors (tests/test_manifests_schema.py checks the two agree).
    """
    g = _gates.get(kind)
    if g is None:
        g = _gates[kind] = fastjsonschema.compile(_schema(kind), use_formats=False)
    return g


def _describe(err):
    """(path tuple, message) for one jsonschema error, worded for a manifest author."""
    path = tuple(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        if extra:
            known = ", ".join(sorted(err.schema.get("properties", {})))
            return path + (extra[0],), "unknown field %r (known: %s)" % (extra[0], known)
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return path + (missing,), "required field is missing"
    if v == "type":
        expected = err.validator_value
        if isinstance(expected, list):
            expected = " or ".join(expected)
        return path, "expected %s, got %s" % (_a(expected), _json_type(err.instance))
    if v == "anyOf" and err.schema.get("anyOf") == _INT_OR_STRING["anyOf"]:
        return path, "expected an integer or a string, got %s" % _json_type(err.instance)
    if v == "enum":
        return path, "must be one of %s (got %r)" % (
            ", ".join(repr(x) for x in err.validator_value), err.instance)
    if v == "pattern":
        comment = _comment(err)
        return path, comment or "%r does not match %s" % (err.instance, err.validator_value)
    if v == "not" and "required" in (err.validator_value or {}):
        return path, _comment(err) or "fields %s cannot be used together" % (
            " and ".join(err.validator_value["required"]))
    if v in ("minimum", "maximum"):
        return path, "%r is out of range (%s %s)" % (err.instance, v, err.validator_value)
    return path, err.message


def _comment(err):
    # CEL rules translated by gen_schemas.py carry Kubernetes' message as $comment.
    return err.schema.get("$comment") if isinstance(err.schema, dict) else None


def _a(t):
    return {"integer": "an integer", "object": "a mapping", "array": "a list",
            "string": "a string", "boolean": "true or false", "number": "a number"}.get(t, t)


def _json_type(x):
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, int):
        return "an integer"
    if isinstance(x, float):
        return "a number"
    if isinstance(x, str):
        return "a string %r" % x if len(x) < 40 else "a string"
    if isinstance(x, list):
        return "a list"
    if isinstance(x, dict):
        return "a mapping"
    if x is None:
        return "null"
    return type(x).__name__


def validate(obj):
    """ConfigErrors for everything in ``obj`` (a K8sObject) its schema refuses (empty if valid)."""
    try:
        _gate(obj.kind)(obj.body)
        return []
    except fastjsonschema.JsonSchemaException:
        pass
    v = _validator(obj.kind)
    errs = []
    core = obj.kind in CORE
    for err in v.iter_errors(obj.body):
        if core and err.validator == "additionalProperties":
            # worded as the API server's strict field validation, one error per field
            base = tuple(err.absolute_path)
            for extra in sorted(set(err.instance) - set(err.schema.get("properties", {}))):
                errs.append(obj.error('unknown field "%s"' % field_path(base + (extra,)),
                                      base + (extra,)))
            continue
        path, msg = _describe(err)
        errs.append(obj.error(msg, path))
    errs.sort(key=lambda e: (e.line or 0, e.field or ""))
    return errs
