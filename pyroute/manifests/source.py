"""Reading manifest files into Kubernetes objects that remember where they came from.

Files and folders (recursively: ``*.yaml``, ``*.yml``, ``*.json``), several documents per file,
``kind: List`` unwrapped. YAML is parsed with libyaml (PyYAML's ``CSafeLoader``); each object
keeps its document's node tree so that an error about ``spec.routes[0].services[0].port`` can
name the line it is on — the lookup is done only when a message needs it, so loading stays fast.
"""
import os
import warnings

import yaml

from ..errors import ConfigError

__all__ = ["K8sObject", "read_paths", "field_path", "KNOWN_KINDS", "SourceError"]

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml: correct, but several times slower.
    warnings.warn("PyYAML has no libyaml (CSafeLoader); manifests load with the slow "
                  "pure-Python parser — install libyaml and reinstall PyYAML", RuntimeWarning)
    _Loader = yaml.SafeLoader

TRAEFIK_GROUPS = ("traefik.io/v1alpha1", "traefik.containo.us/v1alpha1")

# kind -> accepted apiVersions. Anything else (Deployments, IngressRouteTCP, ...) is ignored.
KNOWN_KINDS = {
    "IngressRoute": TRAEFIK_GROUPS,
    "Middleware": TRAEFIK_GROUPS,
    "TraefikService": TRAEFIK_GROUPS,
    "TLSOption": TRAEFIK_GROUPS,
    "TLSStore": TRAEFIK_GROUPS,
    "ServersTransport": TRAEFIK_GROUPS,
    "Service": ("v1",),
    "Endpoints": ("v1",),
    "EndpointSlice": ("discovery.k8s.io/v1",),
    "Secret": ("v1",),
    "ConfigMap": ("v1",),
    "Node": ("v1",),          # cluster-scoped: nodePortLB servers (Traefik GetNodes)
}

EXTENSIONS = (".yaml", ".yml", ".json")

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_ScalarNode, _MappingNode, _SequenceNode = yaml.ScalarNode, yaml.MappingNode, yaml.SequenceNode


class _Loader(_Loader):
    """libyaml parser whose implicit-tag resolution is memoised.

    Resolving a plain scalar's tag runs a regular expression per scalar in Python; manifests
    repeat the same keys and values thousands of times, so the answer is cached per loader.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._tags = {}

    def resolve(self, kind, value, implicit):
        key = (kind, value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = super().resolve(kind, value, implicit)
        return tag


# Kubernetes reads YAML as JSON (sigs.k8s.io/yaml): an unquoted date stays a string.
_Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: node.value)


# ---- bounding what aliases expand to (billion laughs) -------------------------------------
# libyaml composes an alias as a second reference to its anchor's node, so a 439-byte file can
# describe 10^9 nodes; building Python data (or JSON, or a schema walk) from it copies each
# reference. Before any data is built, a document that has anchors is measured on its node
# graph (each node once): what it expands to must stay within the limits below, else the file is
# refused, as the API server refuses it (go-yaml: "document contains excessive aliasing").
ALIAS_NODES = 1_000_000     # nodes a file may gain through aliases (over all its documents)
ALIAS_BYTES = 16 << 20      # scalar bytes a file may gain through aliases
MAX_DEPTH = 1000            # nesting of one document (Kubernetes' JSON decoder stops at 10000)


class _Limit(Exception):
    """A document expands beyond the limits; ``args``: (message, 0-based line)."""


def _alias_ratio(decoded):
    # go-yaml v2/v3 (decode.go allowedAliasRatio): the share of nodes decoded through aliases
    # allowed for a document that decodes ``decoded`` nodes
    if decoded <= 400_000:
        return 0.99
    if decoded >= 4_000_000:
        return 0.10
    return 0.99 - 0.89 * (decoded - 400_000) / 3_600_000


def _measure(root, budget):
    """(expanded nodes, distinct nodes, expanded scalar bytes, distinct scalar bytes) of a
    document's node graph, walking each node once; raises _Limit on a recursive alias, on
    nesting deeper than MAX_DEPTH, or as soon as a node alone expands beyond ``budget``
    ((nodes, bytes) a file may still gain through aliases)."""
    memo = {}            # id(node) -> (expanded nodes, expanded bytes)
    active = set()       # ids of the nodes on the current path (a cycle comes back to one)
    distinct_bytes = 0
    max_nodes, max_bytes = budget
    stack = [(root, False, 0)]
    while stack:
        node, done, depth = stack.pop()
        key = id(node)
        t = type(node)
        if done:
            active.discard(key)
            n, b = 1, 0
            if t is _MappingNode:
                for k, v in node.value:
                    kn, kb = memo[id(k)]
                    vn, vb = memo[id(v)]
                    n += kn + vn
                    b += kb + vb
            else:
                for c in node.value:
                    cn, cb = memo[id(c)]
                    n += cn
                    b += cb
            memo[key] = (n, b)
            if n - len(memo) > max_nodes or b - distinct_bytes > max_bytes:
                raise _Limit("document expands to more than its allowed size through YAML "
                             "aliases (%d nodes and %d bytes at the node starting here; a file "
                             "may add at most %d nodes and %d bytes through aliases)"
                             % (n, b, ALIAS_NODES, ALIAS_BYTES), node.start_mark.line)
            continue
        if key in memo:
            continue
        if key in active:
            raise _Limit("anchor value contains itself (a recursive alias)",
                         node.start_mark.line)
        if t is _ScalarNode:
            size = len(node.value)
            memo[key] = (1, size)
            distinct_bytes += size
            continue
        if depth > MAX_DEPTH:
            raise _Limit("nesting deeper than %d levels" % MAX_DEPTH, node.start_mark.line)
        active.add(key)
        stack.append((node, True, depth))
        if t is _MappingNode:
            for k, v in node.value:
                stack.append((k, False, depth + 1))
                stack.append((v, False, depth + 1))
        else:
            for c in node.value:
                stack.append((c, False, depth + 1))
    nodes, size = memo[id(root)]
    return nodes, len(memo), size, distinct_bytes


def _check_expansion(node, budget):
    """Raise _Limit when ``node`` (a document) expands too much; returns what it gains
    through aliases as (nodes, bytes)."""
    decoded, distinct, size, distinct_bytes = _measure(node, budget)
    aliased = decoded - distinct
    if aliased > 100 and decoded > 1000 and aliased / decoded > _alias_ratio(decoded):
        raise _Limit("document contains excessive aliasing (%d of its %d nodes come from "
                     "YAML aliases)" % (aliased, decoded), node.start_mark.line)
    return aliased, size - distinct_bytes


class SourceError(ConfigError):
    """A manifest path that could not be read or parsed (missing, unreadable, invalid YAML, over
    the expansion limits): its objects are unknown, not absent. A reload that meets one keeps
    the previous configuration, as Traefik's file provider does."""


class _Fallback(Exception):
    """The document uses a YAML feature the fast constructor leaves to PyYAML (merge keys...)."""


def _construct(node, loader, depth=0):
    """Python data for a node: str/map/seq built directly, other scalars by PyYAML.

    About four times faster than SafeConstructor for manifests; anything unusual (merge keys,
    explicit tags, recursion through aliases) raises _Fallback and PyYAML builds the document.
    """
    t = type(node)
    if t is _ScalarNode:
        if node.tag == _STR:
            return node.value
        return loader.construct_object(node, deep=True)
    if depth > 64:
        raise _Fallback()
    if t is _MappingNode:
        if node.tag != _MAP:
            raise _Fallback()
        out = {}
        for k, v in node.value:
            if type(k) is not _ScalarNode or k.tag != _STR:
                raise _Fallback()
            out[k.value] = _construct(v, loader, depth + 1)
        return out
    if t is _SequenceNode and node.tag == _SEQ:
        return [_construct(v, loader, depth + 1) for v in node.value]
    raise _Fallback()


def field_path(path):
    """``("spec", "routes", 0, "match")`` -> ``"spec.routes[0].match"``."""
    out = []
    for p in path:
        if isinstance(p, int):
            out.append("[%d]" % p)
        else:
            out.append(("." if out else "") + str(p))
    return "".join(out)


class K8sObject:
    """One Kubernetes object read from a file: its body plus where it was written.

    The YAML node tree is not kept (it would triple the memory of a large configuration and slow
    every later garbage collection); the line of a field is found by parsing the document again
    when a message needs it.
    """

    __slots__ = ("kind", "api_version", "namespace", "name", "body", "file", "line", "_doc",
                 "_base")

    def __init__(self, body, file, line, doc, base=()):
        self.body = body
        self.kind = body.get("kind")
        self.api_version = body.get("apiVersion")
        meta = body.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        name = meta.get("name") or meta.get("generateName")
        self.name = name if isinstance(name, str) else ""
        ns = meta.get("namespace")
        self.namespace = ns if isinstance(ns, str) and ns else "default"
        self.file = file
        self.line = line           # first line of the object
        self._doc = doc            # index of its document in the file
        self._base = base          # its path inside that document (kind: List items)

    @property
    def spec(self):
        spec = self.body.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def metadata(self):
        meta = self.body.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def ref(self):
        return "%s/%s" % (self.namespace, self.name)

    def line_of(self, path):
        """Line (1-based) of the node at ``path``, or of its deepest existing ancestor."""
        node = _document_node(self.file, self._doc)
        if node is None:
            return self.line
        node = _child(node, self._base) or node
        line = node.start_mark.line + 1
        for key in path:
            entry = _entry(node, key)
            if entry is None:
                break
            # a mapping entry's line is its key's (a block value starts one line below)
            line = entry[0].start_mark.line + 1
            node = entry[1]
        return line

    def error(self, message, path=(), severity="error"):
        """A ConfigError about ``path`` (a tuple, e.g. ``("spec", "routes", 0)``) of this object."""
        return ConfigError(message, file=self.file, line=self.line_of(path), kind=self.kind,
                           namespace=self.namespace, name=self.name,
                           field=field_path(path) or None, severity=severity)

    def __repr__(self):
        return "<%s %s at %s:%s>" % (self.kind, self.ref, self.file, self.line)


_node_cache = {}   # file -> [document nodes]; the few files that have errors


def _document_node(file, index):
    nodes = _node_cache.get(file)
    if nodes is None:
        if len(_node_cache) > 16:
            _node_cache.clear()
        nodes = []
        try:
            with open(file, "rb") as f:
                loader = _Loader(f.read())
            try:
                while loader.check_node():
                    nodes.append(loader.get_node())
            finally:
                loader.dispose()
        except (OSError, yaml.YAMLError):
            pass
        _node_cache[file] = nodes
    return nodes[index] if index < len(nodes) else None


def _files(paths, errors):
    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for n in names:
                    if n.endswith(EXTENSIONS) and not n.startswith("."):
                        found.append(os.path.join(root, n))
            yield from sorted(found)
        elif os.path.exists(path):
            yield path
        else:
            errors.append(SourceError("no such file or directory", file=path))


def _read_file(path, errors, out):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        errors.append(SourceError("cannot read: %s" % e.strerror, file=path))
        return
    _node_cache.pop(path, None)
    loader = _Loader(data)
    doc = -1
    # without an anchor there is no alias: nothing expands beyond the file's own text
    budget = (ALIAS_NODES, ALIAS_BYTES) if b"&" in data else None
    try:
        while loader.check_node():
            node = loader.get_node()
            doc += 1
            if node is None:
                continue
            if budget is not None:
                try:
                    nodes, size = _check_expansion(node, budget)
                except _Limit as e:
                    errors.append(SourceError("invalid YAML: %s" % e.args[0], file=path,
                                              line=e.args[1] + 1))
                    return
                budget = (budget[0] - nodes, budget[1] - size)
            try:
                body = _construct(node, loader)
            except _Fallback:
                body = loader.construct_document(node)
            _add_document(path, node, doc, body, errors, out)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        errors.append(SourceError("invalid YAML: %s" % problem, file=path,
                                  line=mark.line + 1 if mark else None))
    finally:
        loader.dispose()


def _add_document(path, node, doc, body, errors, out, base=()):
    line = node.start_mark.line + 1
    if body is None:
        return
    if not isinstance(body, dict) or "kind" not in body or "apiVersion" not in body:
        errors.append(ConfigError("not a Kubernetes object (a mapping with apiVersion and kind "
                                  "is expected)", file=path, line=line))
        return
    if not isinstance(body["kind"], str) or not isinstance(body["apiVersion"], str):
        errors.append(ConfigError("apiVersion and kind must be strings", file=path, line=line))
        return
    if body["kind"] == "List" and body["apiVersion"] == "v1":
        items = body.get("items") or []
        if not isinstance(items, list):
            errors.append(ConfigError("List.items must be a list", file=path, line=line))
            return
        for i, item in enumerate(items):
            sub = _child(node, ("items", i))
            _add_document(path, sub if sub is not None else node, doc, item, errors, out,
                          base=base + ("items", i))
        return
    accepted = KNOWN_KINDS.get(body["kind"])
    if accepted is None or body["apiVersion"] not in accepted:
        return  # a kind pyroute does not use
    obj = K8sObject(body, path, node.start_mark.line + 1, doc, base)
    problem = _metadata_problem(body.get("metadata"))
    if problem:
        errors.append(obj.error(problem[1], problem[0]))
        return
    out.append(obj)


def _metadata_problem(meta):
    """(path, message) for metadata the API server would refuse, else None."""
    if not isinstance(meta, dict):
        return ("metadata",), "metadata must be a mapping with a name"
    name = meta.get("name") or meta.get("generateName")
    if not isinstance(name, str) or not name:
        return ("metadata",), "metadata.name is required"
    if meta.get("namespace") is not None and not isinstance(meta["namespace"], str):
        return ("metadata", "namespace"), "must be a string"
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return ("metadata", key), "must be a mapping of strings to strings"
    return None


def _entry(node, key):
    """(key node, value node) of ``key`` in a mapping node, (item, item) of index ``key`` in a
    sequence node, or None."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                return k, v
    elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
        if 0 <= key < len(node.value):
            return node.value[key], node.value[key]
    return None


def _child(node, path):
    for key in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    child = v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key < len(node.value):
                child = node.value[key]
        if child is None:
            return None
        node = child
    return node


def read_paths(paths, skip=()):
    """Read every manifest under ``paths`` (files in ``skip`` excepted, e.g. the static
    configuration when it sits in a manifest folder): returns (objects, errors, files_read)."""
    errors, objects, files = [], [], []
    _node_cache.clear()
    skip = {os.path.abspath(p) for p in skip if p}
    for f in _files(paths, errors):
        if os.path.abspath(f) in skip:
            continue
        files.append(f)
        _read_file(f, errors, objects)
    return objects, errors, files
