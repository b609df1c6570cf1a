"""The rule language as Go's expression parser and vulcand/predicate read it in Traefik."""
import pytest

from pyroute import rules
from pyroute.errors import RuleSyntaxError as ReexportedRuleSyntaxError

V3_NAMES = ["Host", "HostRegexp", "Path", "PathPrefix", "PathRegexp", "Method", "Header",
            "HeaderRegexp", "Query", "QueryRegexp", "ClientIP"]

ARGS = {
    "Host": "`a.example`", "HostRegexp": "`^a\\.example$`", "Path": "`/p`",
    "PathPrefix": "`/p`", "PathRegexp": "`^/p`", "Method": "`GET`", "Header": "`X-A`, `1`",
    "HeaderRegexp": "`X-A`, `^1$`", "Query": "`q`, `1`", "QueryRegexp": "`q`, `^1$`",
    "ClientIP": "`10.0.0.1`",
}
REQ = dict(method="GET", host="a.example", path="/p", query="q=1", headers=[("x-a", "1")],
           remote_addr="10.0.0.1:4000")


def err(rule, syntax="v3"):
    with pytest.raises(rules.RuleSyntaxError) as info:
        rules.compile(rule, syntax)
    return info.value


# --- matcher names ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", V3_NAMES)
def test_every_v3_matcher_in_each_accepted_spelling(name):
    # Traefik pkg/rules NewParser: name, lower, UPPER and Title(lower) are registered.
    for spelling in (name, name.lower(), name.upper(), name.lower().capitalize()):
        r = rules.compile("%s(%s)" % (spelling, ARGS[name]))
        assert r.matches(**REQ), spelling


@pytest.mark.parametrize("spelling", ["pathPrefix", "PATHprefix", "Path_prefix", "hostregexp_",
                                      "PathPREFIX", "clientIp", "Clientip2"])
def test_other_spellings_are_refused(spelling):
    e = err("%s(`/`)" % spelling)
    assert "unsupported matcher" in e.message
    assert e.pos == 0


def test_spelling_error_suggests_accepted_forms():
    e = err("Host(`a`) && pathPrefix(`/`)")
    assert e.pos == 13
    assert "PathPrefix, pathprefix, PATHPREFIX or Pathprefix" in e.message


def test_matcher_spellings_lists_exactly_four_forms_per_name():
    sp = rules.matcher_spellings("v3")
    assert sp["Pathprefix"] == "PathPrefix" and sp["CLIENTIP"] == "ClientIP"
    assert len(sp) == len(set(sp))
    assert set(sp.values()) == set(V3_NAMES)
    assert "Headers" not in sp and "HostHeader" not in sp


def test_v2_only_matchers_are_unknown_in_v3_with_a_hint():
    e = err("Headers(`X-A`, `1`)")
    assert "Headers is a v2-syntax matcher" in e.message


def test_rule_syntax_error_is_a_value_error_and_reexported():
    e = err("Nope(`x`)")
    assert isinstance(e, ValueError)
    assert rules.RuleSyntaxError is ReexportedRuleSyntaxError


# --- operators and precedence ---------------------------------------------------------------

def test_and_binds_tighter_than_or():
    r = rules.compile("Host(`a`) || Host(`b`) && Path(`/x`)")
    assert r.matches(host="a", path="/other")          # a || (b && /x)
    assert r.matches(host="b", path="/x")
    assert not r.matches(host="b", path="/other")


def test_parentheses_override_precedence():
    r = rules.compile("(Host(`a`) || Host(`b`)) && Path(`/x`)")
    assert not r.matches(host="a", path="/other")
    assert r.matches(host="a", path="/x")


def test_not_binds_tightest_and_nests():
    r = rules.compile("!Host(`a`) && Path(`/x`)")
    assert r.matches(host="b", path="/x")
    assert not r.matches(host="a", path="/x")
    assert not r.matches(host="b", path="/y")
    assert rules.compile("!!Host(`a`)").matches(host="a")
    r = rules.compile("!(Host(`a`) || Path(`/x`))")
    assert r.matches(host="b", path="/y")
    assert not r.matches(host="b", path="/x")


def test_or_and_chains_are_left_associative_and_short_circuit_correctly():
    r = rules.compile("Path(`/1`) || Path(`/2`) || Path(`/3`)")
    assert [r.matches(path=p) for p in ("/1", "/2", "/3", "/4")] == [True, True, True, False]
    r = rules.compile("Method(`GET`) && Path(`/a`) && Host(`h`)")
    assert r.matches(method="GET", path="/a", host="h")
    assert not r.matches(method="POST", path="/a", host="h")


# --- Go string literals ----------------------------------------------------------------------

def test_backtick_raw_string_keeps_backslashes_and_drops_carriage_returns():
    assert rules.compile(r"PathRegexp(`^/a\.b$`)").matches(path="/a.b")
    assert not rules.compile(r"PathRegexp(`^/a\.b$`)").matches(path="/axb")
    r = rules.compile("Header(`X-A`, `a\r\nb`)")       # Go discards \r inside raw strings
    assert r.matches(headers=[("X-A", "a\nb")])


def test_double_quoted_strings_with_go_escapes():
    assert rules.compile('Path("/a\\x41\\101\\u00e9")').matches(path="/aAA%C3%A9")
    assert rules.compile('Header("X-A", "tab\\there\\"q\\\\")').matches(
        headers=[("X-A", 'tab\there"q\\')])
    assert rules.compile('Path("/\\U0001F600")').matches(path="/%F0%9F%98%80")


@pytest.mark.parametrize("rule,pos,what", [
    ('Path("/a\\q")', 8, "unknown escape sequence"),
    ("Path(\"/a\\'\")", 8, "unknown escape sequence"),       # \' only in rune literals
    ('Path("/a\\400")', 8, "octal escape"),
    ('Path("/a\\x4")', 11, "illegal character"),
    ('Path("/a\\ud800")', 8, "invalid Unicode code point"),
    ('Path("/a', 5, "string literal not terminated"),
    ('Path("/a\n")', 5, "string literal not terminated"),
    ("Path(`/a", 5, "raw string literal not terminated"),
    ("Path('/a')", 5, "single quotes"),
])
def test_bad_string_literals(rule, pos, what):
    e = err(rule)
    assert what in e.message
    assert e.pos == pos


def test_nul_and_inner_byte_order_marks_are_illegal_as_in_go():
    assert err("Path(`/a\x00`)").message == "illegal character NUL"
    assert err("Path(`/a`) && \ufeffPath(`/b`)").message == "illegal byte order mark"
    assert rules.compile("\ufeffPath(`/a`)").matches(path="/a")    # skipped at the start


def test_arguments_must_be_string_literals():
    assert "is a number" in err("Path(1)").message
    assert "a is not defined" in err("Path(a)").message
    assert err("Path(`/a` `/b`)").pos == 10


def test_trailing_comma_and_ellipsis_are_go_call_syntax():
    assert rules.compile("Path(`/a`,)").matches(path="/a")
    assert rules.compile("Path(`/a`...)").matches(path="/a")
    assert rules.compile("Header(`X-A`, `1`,)").matches(headers=[("X-A", "1")])


# --- newlines and comments as Go has them ----------------------------------------------------

def test_newlines_after_operators_and_open_parens_are_fine():
    rule = "Host(`a`) &&\n  (\n    Path(`/x`) ||\n    Path(`/y`))\n"
    r = rules.compile(rule)
    assert r.matches(host="a", path="/y")
    assert r.priority == len(rule)


def test_newline_before_an_operator_ends_the_expression():
    rule = "Host(`a`)\n&& Path(`/x`)"
    e = err(rule)
    assert e.pos == rule.index("&&")
    assert "line break" in e.message
    # the caret line is the line holding the error
    assert str(e).splitlines()[1:] == ["  && Path(`/x`)", "  ^"]


def test_newline_inside_arguments_needs_a_trailing_comma():
    e = err("Header(`X-A`,\n `1`\n)")
    assert "missing ',' before newline" in e.message
    assert e.pos == 18
    assert rules.compile("Header(`X-A`,\n `1`,\n)").matches(headers=[("X-A", "1")])


def test_newline_between_matcher_name_and_paren_is_an_error():
    assert "same line" in err("Host\n(`a`)").message


def test_comments_are_whitespace():
    r = rules.compile("Host(`a`) /* api */ && // end of line\n Path(`/x`)")
    assert r.matches(host="a", path="/x")
    assert "comment not terminated" in err("Host(`a`) /* x").message
    # a line comment ends the line: what follows an operand on the next line is an error
    assert err("Host(`a`) // c\n&& Path(`/`)").pos == 15


# --- structural errors with position, caret and matcher --------------------------------------

@pytest.mark.parametrize("rule,pos", [
    ("", 0),
    ("   ", 3),
    ("Host(`a`) &&", 12),
    ("Host(`a`) ||| Path(`/`)", 12),
    ("Host(`a`) & Path(`/`)", 10),
    ("Host(`a`) == Path(`/`)", 10),
    ("Host(`a`) Path(`/`)", 10),
    ("(Host(`a`)", 10),
    ("Host(`a`))", 9),
    ("Host(`a`);", 9),
    ("Host `a`", 5),
    ("Host", 4),
    ("`a`", 0),
    ("()", 1),
    ("Host(`a`) && -Path(`/`)", 13),
    ("Host(`a`) and Path(`/`)", 10),
])
def test_structural_errors_point_at_the_spot(rule, pos):
    e = err(rule)
    assert e.pos == pos, e
    assert e.rule == rule
    if rule:
        assert str(e).splitlines()[-1] == "  " + " " * pos + "^"


def test_error_names_the_matcher_involved():
    e = err("Host(`a`) && Path(`nope`)")
    assert e.matcher == "Path"
    assert e.pos == 18
    assert "in Path()" in str(e)
    assert "does not start with a '/'" in e.message


@pytest.mark.parametrize("rule,matcher,what", [
    ("Host()", "Host", "no args"),
    ("Path(``)", "Path", "empty args"),
    ("Header(`X-A`, ``)", "Header", "empty args"),
    ("Host(`a`, `b`)", "Host", "got 2, expected 1"),
    ("Header(`X-A`)", "Header", "got 1, expected 2"),
    ("Query(`a`, `b`, `c`)", "Query", "got 3, expected 1 or 2"),
    ("Host(`é.example`)", "Host", "non-ASCII"),
    ("HostRegexp(`é`)", "HostRegexp", "non-ASCII"),
    ("PathPrefix(`api`)", "PathPrefix", "does not start with a '/'"),
    ("PathRegexp(`(`)", "PathRegexp", "invalid regexp"),
    ("HeaderRegexp(`X`, `a(?=b)`)", "HeaderRegexp", "invalid regexp"),    # no look-around
    ("QueryRegexp(`q`, `(a)\\1`)", "QueryRegexp", "invalid regexp"),      # no back-references
    ("ClientIP(`10.0.0.300`)", "ClientIP", "invalid IP"),
    ("ClientIP(`10.0.0.0/33`)", "ClientIP", "prefix longer"),
    ("ClientIP(`010.0.0.1`)", "ClientIP", "invalid IP"),                  # Go refuses leading 0
    ("ClientIP(`fe80::1%eth0`)", "ClientIP", "invalid IP"),
])
def test_matcher_argument_errors(rule, matcher, what):
    e = err(rule)
    assert e.matcher == matcher
    assert what in e.message, e.message


def test_error_position_is_a_byte_offset_but_caret_aligns_on_characters():
    rule = "Path(`/é`) && Nope(`x`)"
    e = err(rule)
    assert e.pos == len("Path(`/é`) && ".encode())
    assert str(e).splitlines()[-1] == "  " + " " * rule.index("Nope") + "^"


def test_unknown_syntax_is_refused():
    with pytest.raises(ValueError, match="unknown rule syntax"):
        rules.compile("Host(`a`)", syntax="v1")
