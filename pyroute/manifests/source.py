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

__all__ = ["K8sObject", "read_paths", "field_path", "KNOWN_KINDS"]

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
            child = _child(node, (key,))
            if child is None:
                break
            node = child
            line = node.start_mark.line + 1
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
            errors.append(ConfigError("no such file or directory", file=path))


def _read_file(path, errors, out):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        errors.append(ConfigError("cannot read: %s" % e.strerror, file=path))
        return
    _node_cache.pop(path, None)
    loader = _Loader(data)
    doc = -1
    try:
        while loader.check_node():
            node = loader.get_node()
            doc += 1
            if node is None:
                continue
            try:
                body = _construct(node, loader)
            except _Fallback:
                body = loader.construct_document(node)
            _add_document(path, node, doc, body, errors, out)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        errors.append(ConfigError("invalid YAML: %s" % problem, file=path,
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
