#!/usr/bin/env python3
"""Port Traefik's CRD provider table tests into pyroute's test data.

Reads ``pkg/provider/kubernetes/crd/kubernetes_test.go`` and its ``fixtures/`` from a git
checkout of traefik/traefik, turns the Go ``expected *dynamic.Configuration`` literals of the
table-driven HTTP tests into JSON (field names from the ``json`` tags of Traefik's dynamic
configuration types, Go's omitempty rules applied: zero values vanish, pointers stay) and writes

    tests/data/traefik_crd/cases.json      one entry per case: test, desc, paths, options, expected
    tests/data/traefik_crd/fixtures/*.yml  the fixture files the cases name

Usage: scripts/port_traefik_crd_tests.py /path/to/traefik.git [commit]
"""
import json
import os
import re
import subprocess
import sys

TESTS = {
    # test function -> (provider options fixed by the test, namespaces watched)
    "TestLoadIngressRoutes": ({"allowExternalNameServices": True}, None),
    "TestCrossNamespace": ({}, None),
    "TestExternalNameService": ({}, None),
    "TestNativeLB": ({}, None),
    "TestNodePortLB": ({}, ["default", "cross-ns"]),
    "TestGlobalNativeLB": ({}, ["default", "cross-ns"]),
}
# struct field of a test case -> provider option
OPTION_FIELDS = {
    "ingressClass": "ingressClass",
    "allowCrossNamespace": "allowCrossNamespace",
    "allowEmptyServices": "allowEmptyServices",
    "crossProviderNamespaces": "crossProviderNamespaces",
    "allowExternalNameService": "allowExternalNameServices",
    "disableClusterScope": "disableClusterScopeResources",
    "NativeLBByDefault": "nativeLBByDefault",
}
EXTRA_FIXTURES = ["with_middleware_cross_provider.yml", "with_service_cross_provider.yml",
                  "with_multiple_endpointslices.yml",
                  "with_tls_option_cross_provider.yml",
                  "with_servers_transport_cross_provider.yml"]
TYPE_SOURCES = ["pkg/config/dynamic/config.go", "pkg/config/dynamic/http_config.go",
                "pkg/config/dynamic/middlewares.go", "pkg/config/dynamic/plugins.go",
                "pkg/config/dynamic/tcp_config.go", "pkg/config/dynamic/tcp_middlewares.go",
                "pkg/config/dynamic/udp_config.go",
                "pkg/tls/certificate.go", "pkg/tls/tls.go", "pkg/types/tls.go",
                "pkg/types/domains.go"]
DURATIONS = {"time.Nanosecond": 1, "time.Microsecond": 1000, "time.Millisecond": 10**6,
             "time.Second": 10**9, "time.Minute": 60 * 10**9, "time.Hour": 3600 * 10**9}


NAMED = {}   # named slice and map types: name -> type descriptor


class Ptr:
    """A Go pointer: its zero target is not omitted."""

    def __init__(self, value):
        self.value = value


class Dur(int):
    pass


def git_show(repo, commit, path):
    return subprocess.run(["git", "--git-dir", repo, "show", "%s:%s" % (commit, path)],
                          check=True, capture_output=True, text=True).stdout


def struct_tags(sources):
    """struct name -> {field: (json name or None for embedded, omitempty, type text)}."""
    structs = {}
    consts = {}
    for text in sources:
        for m in re.finditer(r"^type (\w+) struct \{\n(.*?)^\}", text, re.M | re.S):
            fields = {}
            for line in m.group(2).splitlines():
                line = line.strip()
                if not line or line.startswith("//"):
                    continue
                fm = re.match(r"(\w+)\s+([^`]+?)\s*`([^`]*)`", line)
                em = re.match(r"(\*?[\w.]+)\s*(`[^`]*`)?$", line)
                if fm:
                    tag = re.search(r'json:"([^"]*)"', fm.group(3))
                    name, _, opts = (tag.group(1) if tag else fm.group(1)).partition(",")
                    fields[fm.group(1)] = (name or fm.group(1), "omitempty" in opts,
                                           fm.group(2))
                elif em:
                    base = em.group(1).lstrip("*").split(".")[-1]
                    fields[base] = (None, False, base)
            structs[m.group(1)] = fields
        for m in re.finditer(r"^type (\w+) (\[\]|map\[\w+\])\*?([\w.]+)", text, re.M):
            elem = ("struct", m.group(3).split(".")[-1])
            NAMED[m.group(1)] = ("slice" if m.group(2) == "[]" else "map", elem)
        for m in re.finditer(r"^\s*(\w+)\s+\w+\s*=\s*\"([^\"]*)\"", text, re.M):
            consts[m.group(1)] = m.group(2)
    consts["DefaultFlushInterval"] = "100ms"   # ptypes.Duration(100 * time.Millisecond)
    return structs, consts


TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][\w.]*)
  | (?P<op>[{}\[\]():,*&+\-;=]|\.\.\.)
  | (?P<other>.)
""", re.X | re.S)


def tokenize(text):
    out = []
    pos = 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None:
            raise SyntaxError("bad token at %r" % text[pos:pos + 40])
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        out.append((kind, m.group()))
    return out


class Parser:
    def __init__(self, tokens, structs, consts):
        self.t = tokens
        self.i = 0
        self.structs = structs
        self.consts = consts
        self.unknown = set()

    def peek(self, k=0):
        return self.t[self.i + k] if self.i + k < len(self.t) else (None, None)

    def take(self, value=None):
        tok = self.t[self.i]
        if value is not None and tok[1] != value:
            raise SyntaxError("expected %r, got %r near %r"
                              % (value, tok[1], self.t[self.i:self.i + 8]))
        self.i += 1
        return tok

    # types: returns a descriptor ("struct", name) | ("slice", elem) | ("map", elem) | ("scalar",)
    def parse_type(self):
        kind, v = self.peek()
        if v == "*":
            self.take()
            return self.parse_type()
        if v == "[":
            self.take("[")
            self.take("]")
            return ("slice", self.parse_type())
        if v == "map":
            self.take()
            self.take("[")
            self.parse_type()
            self.take("]")
            return ("map", self.parse_type())
        if v == "struct":
            self.take()
            self.take("{")
            depth = 1
            while depth:
                _, x = self.take()
                depth += {"{": 1, "}": -1}.get(x, 0)
            return ("struct", "<anon>")
        if kind == "ident":
            self.take()
            base = v.split(".")[-1]
            return NAMED.get(base, ("struct", base))
        raise SyntaxError("type expected, got %r" % v)

    def is_type_start(self):
        kind, v = self.peek()
        return v in ("[", "map", "struct") or (v == "*" and self.peek(1)[0] == "ident")

    def composite(self, typ):
        """Body of a composite literal ``{...}`` of type ``typ``."""
        if typ[0] == "struct" and typ[1] in NAMED:
            typ = NAMED[typ[1]]
        self.take("{")
        if typ[0] == "slice":
            items = []
            while self.peek()[1] != "}":
                items.append(self.element(typ[1]))
                if self.peek()[1] == ",":
                    self.take()
            self.take("}")
            return items
        if typ[0] == "map":
            out = {}
            while self.peek()[1] != "}":
                key = self.expr(("scalar",))
                self.take(":")
                out[key] = self.element(typ[1])
                if self.peek()[1] == ",":
                    self.take()
            self.take("}")
            return out
        if self.peek()[1] != "}" and (self.peek()[0] != "ident" or self.peek(1)[1] != ":"):
            # a named slice type (dynamic.Users{"a", "b"})
            self.i -= 1
            return self.composite(("slice", ("scalar",)))
        # struct: Field: value
        if len(typ) < 2:
            raise SyntaxError("struct literal of unknown type near %r"
                              % (self.t[self.i - 5:self.i + 8],))
        fields = {}
        while self.peek()[1] != "}":
            _, name = self.take()
            self.take(":")
            fields[name] = self.expr(("field", typ[1], name))
            if self.peek()[1] == ",":
                self.take()
        self.take("}")
        return self.struct_json(typ[1], fields)

    def element(self, typ):
        if self.peek()[1] == "{":
            return self.composite(typ)
        if self.peek()[1] == "&" and self.peek(1)[1] == "{":
            self.take()
            return self.composite(typ)
        return self.expr(typ)

    def struct_json(self, sname, fields):
        info = self.structs.get(sname)
        out = {}
        for name, value in fields.items():
            if info is None or name not in info:
                self.unknown.add("%s.%s" % (sname, name))
                jname, omit = name[:1].lower() + name[1:], True
            else:
                jname, omit, ftype = info[name]
                if "Duration" in ftype:
                    value = as_duration(value)
            if jname is None:       # embedded struct: its fields are inlined
                if isinstance(value, dict):
                    out.update(value)
                continue
            if jname == "-":
                continue
            if isinstance(value, Ptr):
                value = value.value
            elif omit and is_zero(value):
                continue
            out[jname] = value
        return out

    def expr(self, ctx):
        left = self.unary(ctx)
        while self.peek()[1] in ("*", "+", "-") and self.peek(1)[1] not in (")",):
            op = self.take()[1]
            right = self.unary(ctx)
            if op == "*":
                left = left * right
            elif op == "+":
                left = left + right
            else:
                left = left - right
            if isinstance(left, int):
                left = Dur(left)
        return left

    def unary(self, ctx):
        kind, v = self.peek()
        if v == "&":
            self.take()
            typ = self.parse_type()
            return self.composite(typ)
        if v == "-":
            self.take()
            return -self.unary(ctx)
        if v == "(":
            self.take()
            e = self.expr(ctx)
            self.take(")")
            return e
        if kind == "str":
            self.take()
            return json.loads(v)
        if kind == "raw":
            self.take()
            return v[1:-1]
        if kind == "num":
            self.take()
            return float(v) if "." in v else int(v)
        if v == "func":         # func(i int) *int { return &i }(1)
            self.take()
            depth = 0
            while True:
                _, x = self.take()
                if x == "{":
                    depth += 1
                elif x == "}":
                    depth -= 1
                    if depth == 0:
                        break
            self.take("(")
            val = self.expr(ctx)
            self.take(")")
            return Ptr(val)
        if self.is_type_start():
            typ = self.parse_type()
            return self.composite(typ)
        if kind == "ident":
            self.take()
            if v in ("true", "false"):
                return v == "true"
            if v == "nil":
                return None
            if v in DURATIONS:
                return Dur(DURATIONS[v])
            if self.peek()[1] == "(":
                self.take()
                args = []
                while self.peek()[1] != ")":
                    args.append(self.expr(ctx))
                    if self.peek()[1] == ",":
                        self.take()
                self.take(")")
                if v in ("new", "pointer.To", "ptr.To"):
                    return Ptr(args[0])
                if v == "ptypes.Duration":
                    return go_duration(int(args[0]))
                if v in ("int64", "int", "float64", "uint64") or "." in v:
                    return args[0]          # conversions: types.FileOrContent("..."), int64(1)
                raise SyntaxError("unknown call %s" % v)
            if self.peek()[1] == "{":
                base = v.split(".")[-1]
                return self.composite(NAMED.get(base, ("struct", base)))
            base = v.split(".")[-1]
            if base in self.consts:
                return self.consts[base]
            raise SyntaxError("unknown identifier %s" % v)
        raise SyntaxError("unexpected %r near %r" % (v, self.t[self.i:self.i + 8]))


def as_duration(v):
    if isinstance(v, Ptr):
        return Ptr(as_duration(v.value))
    if isinstance(v, int) and not isinstance(v, bool):
        return go_duration(v)
    return v


def is_zero(v):
    return v is None or v is False or (not isinstance(v, bool) and v == 0 and
                                       isinstance(v, (int, float))) or v == "" or v == [] or v == {}


def go_duration(ns):
    import importlib.util
    spec = importlib.util.spec_from_file_location("names", os.path.join(
        os.path.dirname(__file__), "..", "pyroute", "manifests", "names.py"))
    names = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(names)
    return names.format_duration(ns / 1e9)


def prune(v):
    """Drop the empty maps Go writes as ``map[...]{}`` (omitempty drops them in JSON)."""
    if isinstance(v, dict):
        return {k: prune(x) for k, x in v.items() if not (isinstance(x, (dict, list)) and not x)}
    if isinstance(v, list):
        return [prune(x) for x in v]
    return v


def parse_cases(text, func, structs, consts):
    """The ``testCases`` table of Go test ``func``: (cases, struct field names, unknown
    fields)."""
    body = text[text.index("func %s(" % func):]
    seg = body[re.search(r"testCases := \[\]struct \{", body).end():]
    close = seg.index("\n\t}{")
    fields_text = seg[:close]
    struct_fields = re.findall(r"^\s*(\w+)\s", fields_text, re.M)
    rest = seg[close + len("\n\t}"):]
    toks = tokenize(rest)
    p = Parser(toks, structs, consts)
    p.take("{")
    cases = []
    while p.peek()[1] != "}":
        p.take("{")
        case = {}
        while p.peek()[1] != "}":
            _, name = p.take()
            p.take(":")
            if name == "expected":
                p.take("&")
                p.parse_type()
                case[name] = p.composite(("struct", "Configuration"))
            else:
                case[name] = p.expr(("scalar",))
            if p.peek()[1] == ",":
                p.take()
        p.take("}")
        if p.peek()[1] == ",":
            p.take()
        cases.append(case)
    return cases, struct_fields, p.unknown


def main():
    repo = sys.argv[1]
    commit = sys.argv[2] if len(sys.argv) > 2 else "HEAD"
    base = "pkg/provider/kubernetes/crd/"
    text = git_show(repo, commit, base + "kubernetes_test.go")
    structs, consts = struct_tags(git_show(repo, commit, p) for p in TYPE_SOURCES)
    out_dir = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "traefik_crd")
    os.makedirs(os.path.join(out_dir, "fixtures"), exist_ok=True)
    all_cases = []
    unknown = set()
    paths = set()
    for func, (fixed, namespaces) in TESTS.items():
        cases, _, unk = parse_cases(text, func, structs, consts)
        unknown |= unk
        for c in cases:
            if c.get("expected") is None or any(p.startswith(("tcp/", "udp/"))
                                                for p in c.get("paths") or ()):
                continue        # TCP and UDP cases: pyroute serves HTTP only
            options = dict(fixed)
            for field, opt in OPTION_FIELDS.items():
                if field in c and c[field] not in (None, False, ""):
                    options[opt] = c[field]
                elif field == "crossProviderNamespaces" and c.get(field) == []:
                    options[opt] = []
            if namespaces:
                options["namespaces"] = namespaces
            exp = prune(c["expected"])
            all_cases.append({"test": func, "desc": c["desc"], "paths": c.get("paths") or [],
                              "options": options,
                              "expected": {"http": exp.get("http", {}),
                                           "tls": exp.get("tls", {})}})
            paths.update(c.get("paths") or [])
    # fixtures of the tests ported by hand (tests/test_manifests_provider.py)
    paths.update(EXTRA_FIXTURES)
    for p in sorted(paths):
        os.makedirs(os.path.dirname(os.path.join(out_dir, "fixtures", p)), exist_ok=True)
        with open(os.path.join(out_dir, "fixtures", p), "w") as f:
            f.write(git_show(repo, commit, base + "fixtures/" + p))
    rev = subprocess.run(["git", "--git-dir", repo, "rev-parse", commit], check=True,
                         capture_output=True, text=True).stdout.strip()
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump({"source": "traefik/traefik@%s %s" % (rev, base + "kubernetes_test.go"),
                   "cases": all_cases}, f, indent=1, sort_keys=True)
        f.write("\n")
    if unknown:
        print("fields without a json tag found:", ", ".join(sorted(unknown)), file=sys.stderr)
    print("%d cases, %d fixtures" % (len(all_cases), len(paths)))


if __name__ == "__main__":
    main()
