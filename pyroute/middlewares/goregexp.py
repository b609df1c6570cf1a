"""Go's regexp as Traefik's regexp middlewares call it: ``regexp.Compile`` (the compilation
the rules' matchers use, ``pyroute._engine.rules.go_regexp``: RE2), ``FindStringSubmatch`` /
``MatchString`` (``Regexp.search``) and ``ReplaceAllString`` with its ``$1`` / ``${name}``
templates (``Regexp.replace_all``: Go's replaceAll loop and Expand, the template parsed once
at load).
"""
from .._engine.rules import go_regexp

try:
    import re2 as _re2
    _UNANCHORED = _re2._Anchor.UNANCHORED
except Exception:   # pragma: no cover - the engine imports re2 already
    _UNANCHORED = None


def _rune_width(b, i):
    """utf8.DecodeRune(b[i:])'s width: 0 at the end, 1 for an invalid byte."""
    n = len(b)
    if i >= n:
        return 0
    if b[i] < 0x80:
        return 1
    for w in (2, 3, 4):
        if i + w > n:
            break
        try:
            b[i:i + w].decode("utf-8")
            return w
        except UnicodeDecodeError:
            continue
    return 1


def _valid_width(b, i, n):
    """Width of the valid UTF-8 sequence at ``b[i]``, 0 when it is not one."""
    c = b[i]
    if c < 0x80:
        return 1
    w = 2 if c < 0xE0 else 3 if c < 0xF0 else 4
    if c < 0xC2 or c > 0xF4 or i + w > n:
        return 0
    try:
        b[i:i + w].decode("utf-8")
    except UnicodeDecodeError:
        return 0
    return w


def _fold(text):
    """Go reads a byte that is not UTF-8 as U+FFFD (width 1), RE2 matches no character on
    it: None for valid UTF-8 (nearly always), else (text with each such byte written as
    U+FFFD, offset map folded -> original)."""
    if text.isascii():
        return None
    try:
        text.decode("utf-8")
        return None
    except UnicodeDecodeError:
        pass
    out = bytearray()
    where = []
    i, n = 0, len(text)
    while i < n:
        w = _valid_width(text, i, n)
        if w:
            out += text[i:i + w]
            where.extend(range(i, i + w))
            i += w
        else:
            out += b"\xef\xbf\xbd"
            where.extend((i, i, i))
            i += 1
    where.append(n)
    return bytes(out), where


def _extract(s):
    """regexp.extract: (name, num, rest) of a ``$`` reference, or None when malformed."""
    brace = s[:1] == "{"
    if brace:
        s = s[1:]
    i = 0
    while i < len(s) and (s[i].isalpha() or s[i].isdecimal() or s[i] == "_"):
        i += 1
    if i == 0:
        return None
    name = s[:i]
    if brace:
        if i >= len(s) or s[i] != "}":
            return None
        i += 1
    num = 0
    for c in name:
        if not ("0" <= c <= "9") or num >= 100000000:
            num = -1
            break
        num = num * 10 + ord(c) - 48
    if name[0] == "0" and len(name) > 1:
        num = -1
    return name, num, s[i:]


# RE2's parse error texts -> Go's regexp/syntax ErrorCode texts (the same conditions)
_GO_CODES = {
    "missing )": "missing closing )",
    "missing ]": "missing closing ]",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "no argument for repetition operator": "missing argument to repetition operator",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid repetition size": "invalid repeat count",
    "invalid named capture group": "invalid named capture",
    "trailing \\": "trailing backslash at end of expression",
    "pattern too large - compile failed": "expression too large",
}


def _go_error(message):
    """Go's ``*syntax.Error`` text for RE2's message: error parsing regexp: CODE: `EXPR`."""
    text = message[len("error parsing regexp: "):] \
        if message.startswith("error parsing regexp: ") else message
    code, sep, expr = text.partition(": ")
    if not sep and code not in _GO_CODES:
        return message
    return "error parsing regexp: %s: `%s`" % (_GO_CODES.get(code, code), expr)


def _capture_names(pattern):
    """The name (or None) of each capturing group, in order, read from the pattern; None
    when it cannot tell (the caller checks the result against RE2's own count)."""
    names = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if pattern.startswith("\\Q", i):
                end = pattern.find("\\E", i + 2)
                if end < 0:
                    break
                i = end + 2
                continue
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                if end >= 0:
                    i = end + 2
                    continue
            if c == "]":
                in_class = False
            i += 1
            continue
        if c == "[":
            in_class = True
            i += 1
            if pattern.startswith("^", i):
                i += 1
            if pattern.startswith("]", i):
                i += 1          # a ] first in a class is a literal
            continue
        if c == "(":
            if pattern.startswith("(?P<", i) or pattern.startswith("(?<", i):
                start = pattern.index("<", i) + 1
                end = pattern.find(">", start)
                if end < 0:
                    return None
                names.append(pattern[start:end])
            elif not pattern.startswith("(?", i):
                names.append(None)
        i += 1
    return names


class Regexp:
    """One compiled expression (load time); ``search`` and ``replace_all`` per request."""
    __slots__ = ("pattern", "match", "groups", "names")

    def __init__(self, pattern):
        try:
            rx = go_regexp(pattern)
        except ValueError as e:
            raise ValueError(_go_error(str(e))) from None
        self.pattern = pattern
        self.match = rx._regexp.Match
        self.groups = rx.groups
        first = {k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else k: v
                 for k, v in (rx.groupindex or {}).items()}
        # Go allows a name on several groups; Expand takes the first of them that took part
        # in the match (RE2 reports only the first group of a name)
        self.names = {k: (v,) for k, v in first.items()}
        names = _capture_names(pattern)
        if names is not None and len(names) == self.groups:
            found = {}
            for index, name in enumerate(names, 1):
                if name is not None:
                    found.setdefault(name, []).append(index)
            if all(found.get(k, (None,))[0] == v for k, v in first.items()) and \
                    set(found) == set(first):
                self.names = {k: tuple(v) for k, v in found.items()}

    def search(self, text, pos=0):
        """Spans of the leftmost-first match at or after ``pos`` (``text`` before ``pos`` is
        context for ``^`` and ``\\b``, as Go's doExecute), or None."""
        folded = _fold(text)
        if folded is not None:
            ftext, where = folded
            spans = self.match(_UNANCHORED, ftext, where.index(pos) if pos else 0,
                               len(ftext))
            if spans[0][0] < 0:
                return None
            return [(where[a], where[b]) if a >= 0 else (a, b) for a, b in spans]
        spans = self.match(_UNANCHORED, text, pos, len(text))
        if spans[0][0] < 0:
            return None
        return spans

    def template(self, repl):
        """Go's Expand template ``repl`` compiled: parts of bytes (literal), ints (a group)
        and tuples (the groups of one name: the first that took part)."""
        parts = []
        lit = []
        t = repl
        while True:
            before, dollar, after = t.partition("$")
            if not dollar:
                break
            lit.append(before)
            t = after
            if t[:1] == "$":
                lit.append("$")
                t = t[1:]
                continue
            ref = _extract(t) if t else None
            if ref is None:
                lit.append("$")     # malformed: the $ as text
                continue
            name, num, t = ref
            if num < 0:
                ref = self.names.get(name)
                if ref is None:
                    continue        # no such group: nothing
                ref = ref[0] if len(ref) == 1 else ref
            elif num > self.groups:
                continue
            else:
                ref = num
            if lit:
                parts.append("".join(lit).encode("utf-8", "surrogateescape"))
                lit = []
            parts.append(ref)
        lit.append(t)
        if "".join(lit):
            parts.append("".join(lit).encode("utf-8", "surrogateescape"))
        return tuple(parts)

    def replace_all(self, src, parts):
        """Regexp.ReplaceAllString(src, template) with ``parts`` from ``template``."""
        folded = _fold(src)
        if folded is not None:
            return self._replace_folded(src, parts, *folded)
        out = []
        last = 0
        pos = 0
        end = len(src)
        match = self.match
        while pos <= end:
            spans = match(_UNANCHORED, src, pos, end)
            a0, a1 = spans[0]
            if a0 < 0:
                break
            out.append(src[last:a0])
            # no replacement for an empty match right after the previous match
            if a1 > last or a0 == 0:
                for p in parts:
                    if p.__class__ is bytes:
                        out.append(p)
                        continue
                    if p.__class__ is tuple:
                        p = next((g for g in p if spans[g][0] >= 0), p[0])
                    s0, s1 = spans[p]
                    if s0 >= 0:
                        out.append(src[s0:s1])
            last = a1
            width = _rune_width(src, pos)
            if pos + width > a1:
                pos += width
            elif pos + 1 > a1:
                pos += 1
            else:
                pos = a1
        out.append(src[last:])
        return b"".join(out)

    def _replace_folded(self, orig, parts, src, where):
        # the loop above on the folded text; what is copied comes from the original
        out = []
        last = 0
        pos = 0
        end = len(src)
        match = self.match
        while pos <= end:
            spans = match(_UNANCHORED, src, pos, end)
            a0, a1 = spans[0]
            if a0 < 0:
                break
            out.append(orig[where[last]:where[a0]])
            if a1 > last or a0 == 0:
                for p in parts:
                    if p.__class__ is bytes:
                        out.append(p)
                        continue
                    if p.__class__ is tuple:
                        p = next((g for g in p if spans[g][0] >= 0), p[0])
                    s0, s1 = spans[p]
                    if s0 >= 0:
                        out.append(orig[where[s0]:where[s1]])
            last = a1
            width = _rune_width(src, pos)
            if pos + width > a1:
                pos += width
            elif pos + 1 > a1:
                pos += 1
            else:
                pos = a1
        out.append(orig[where[last]:])
        return b"".join(out)
