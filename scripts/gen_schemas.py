#!/usr/bin/env python3
"""Generate pyroute/schemas/*.json from Traefik's CRD definitions.

Reads ``../shared/reference/traefik/traefik.io_*.yaml`` (the CustomResourceDefinitions Traefik
publishes) and writes, for each HTTP-side kind pyroute uses, the ``openAPIV3Schema`` of its
served version as a compact JSON Schema (draft 7) that ``jsonschema`` can check:

- descriptions are dropped (they are most of the bytes);
- ``x-kubernetes-int-or-string`` becomes ``anyOf: [integer, string]`` (the CRD already carries
  that anyOf; the marker alone is removed);
- objects with ``properties`` and without ``x-kubernetes-preserve-unknown-fields`` get
  ``additionalProperties: false``: kubectl's default (strict) field validation refuses unknown
  fields, so a typo such as ``midlewares`` is an error here too;
- the few CEL rules (``x-kubernetes-validations``) the CRDs carry are translated where they have a
  JSON Schema equivalent; any other rule makes this script fail, so a new rule cannot be dropped
  silently.

Usage: scripts/gen_schemas.py [REFERENCE_DIR [OUTPUT_DIR]]   (output is committed)
"""
import json
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_REF = os.path.join(os.path.dirname(REPO), "shared", "reference", "traefik")
OUT = os.path.join(REPO, "pyroute", "schemas")

# The CRDs pyroute reads (TCP/UDP kinds are outside pyroute's scope and ignored by the loader).
FILES = ("ingressroutes", "middlewares", "traefikservices", "tlsoptions", "tlsstores",
         "serverstransports")

# CEL rule -> JSON Schema fragment with the same meaning.
CEL = {
    "self.startsWith('/')": {"pattern": "^/"},
    "!has(self.secret) || !has(self.configMap)": {"not": {"required": ["secret", "configMap"]}},
}


def convert(node, where):
    if isinstance(node, list):
        return [convert(n, where) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("description", "x-kubernetes-int-or-string", "x-kubernetes-list-type",
                   "x-kubernetes-map-type", "x-kubernetes-list-map-keys"):
            continue
        if key == "x-kubernetes-validations":
            for rule in value:
                frag = CEL.get(rule["rule"])
                if frag is None:
                    raise SystemExit("%s: no JSON Schema translation for CEL rule %r"
                                     % (where, rule["rule"]))
                out.setdefault("allOf", []).append(dict(frag, **{"$comment": rule["message"]}))
            continue
        if key == "x-kubernetes-preserve-unknown-fields":
            continue
        if key == "properties":
            out[key] = {k: convert(v, where + "." + k) for k, v in value.items()}
        else:
            out[key] = convert(value, where)
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


# pyroute extensions to Traefik's CRDs: (kind, path of properties, field, schema). Traefik's
# weighted/highestRandomWeight/failover services take ``healthCheck: {}`` (status propagation)
# only from its File provider; pyroute also reads it from a TraefikService (and says, as a
# warning, that Traefik's CRD would refuse it).
EXTENSIONS = [
    ("TraefikService", ("spec", part), "healthCheck",
     {"type": "object", "additionalProperties": False, "properties": {},
      "$comment": "pyroute extension (Traefik: File provider only)"})
    for part in ("weighted", "highestRandomWeight", "failover")
] + [
    # Traefik v3.7's ServersTransport CRD adds peerCertSANs (the reference CRDs predate it);
    # pyroute refuses the services of a transport that sets it until it verifies SANs
    ("ServersTransport", ("spec",), "peerCertSANs",
     {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                 "properties": {"type": {"type": "string"},
                                                "value": {"type": "string"}}},
      "$comment": "Traefik v3.7 (not in the reference CRD)"}),
]


def main(argv):
    ref = argv[1] if len(argv) > 1 else DEFAULT_REF
    out_dir = argv[2] if len(argv) > 2 else OUT
    os.makedirs(out_dir, exist_ok=True)
    for name in FILES:
        path = os.path.join(ref, "traefik.io_%s.yaml" % name)
        with open(path) as f:
            crd = yaml.safe_load(f)
        kind = crd["spec"]["names"]["kind"]
        version = next(v for v in crd["spec"]["versions"] if v.get("served", True))
        schema = convert(version["schema"]["openAPIV3Schema"], kind)
        # metadata is validated by the loader itself (name/namespace are what pyroute reads).
        schema["properties"]["metadata"] = {"type": "object"}
        for ext_kind, where, field, frag in EXTENSIONS:
            if ext_kind == kind:
                node = schema
                for part in where:
                    node = node["properties"][part]
                node["properties"][field] = frag
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        schema["$comment"] = "generated by scripts/gen_schemas.py from traefik.io_%s.yaml (%s)" % (
            name, version["name"])
        target = os.path.join(out_dir, kind + ".json")
        with open(target, "w") as f:
            json.dump(schema, f, separators=(",", ":"), sort_keys=True)
            f.write("\n")
        print("wrote", target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
