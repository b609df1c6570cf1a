"""The entry point's request normalisation (Traefik createHTTPServer's wrappers)."""
import pytest

from pyroute.normalize import (ForwardedHeaders, X_HEADERS, clean_path, denied_escape,
                               normalize_target)


@pytest.mark.parametrize("path,want", [
    ("/", "/"), ("/a/b", "/a/b"), ("/a/./b/../c", "/a/c"), ("/a//b///c/", "/a/b/c/"),
    ("/..", "/"), ("/../../etc/passwd", "/etc/passwd"), ("/a/b/..", "/a"), ("/a/b/../", "/a/"),
    ("/a/.", "/a"), ("/a/./", "/a/"), ("//", "/"),
])
def test_clean_path_is_go_join_path(path, want):
    assert clean_path(path) == want


@pytest.mark.parametrize("target,path,routing,query", [
    ("/a/../b?x=1", "/b", "/b", "x=1"),
    ("/foo%20bar/", "/foo%20bar/", "/foo bar/", None),
    # unreserved escapes are decoded, others upper-cased; reserved ones stay encoded for routing
    ("/%7euser/%41%2fb", "/~user/A%2Fb", "/~user/A%2Fb", None),
    ("/a%2F..%2Fb", "/a%2F..%2Fb", "/a%2F..%2Fb", None),   # %2F is not a separator
    ("/caf%C3%A9", "/caf%C3%A9", "/café", None),
    ("/a?", "/a", "/a", ""),
    ("http://example.com/x/./y?q=1", "/x/y", "/x/y", "q=1"),
])
def test_targets(target, path, routing, query):
    t = normalize_target(target)
    assert (t.status, t.path, t.routing_path, t.query) == (0, path, routing, query)


def test_sanitize_off_keeps_dot_segments():
    t = normalize_target("/a/../b//c", sanitize=False)
    assert t.path == "/a/../b//c"


def test_query_semicolons():
    # default: Go's AllowQuerySemicolons turns ';' into '&'
    assert normalize_target("/a?x=1;y=2").query == "x=1&y=2"
    # http.encodeQuerySemicolons: kept as data
    t = normalize_target("/a?x=1;y=2", encode_semicolons=True)
    assert t.query == "x=1%3By=2"
    assert t.request_uri == "/a?x=1%3By=2"


@pytest.mark.parametrize("target", ["/a#frag", "/a%zz", "/a%2", "/a%", "relative"])
def test_refused_targets_are_400(target):
    assert normalize_target(target).status == 400


def test_forwarded_headers_trust():
    fh = ForwardedHeaders(("10.0.0.0/8", "fd00::/8"))
    headers = [("X-Forwarded-For", "1.1.1.1"), ("x-real-ip", "2.2.2.2"), ("Host", "a"),
               ("X-Forwarded-Proto", "https")]
    assert fh.trusted("10.9.8.7") and fh.trusted("::ffff:10.1.1.1") and fh.trusted("fd00::5")
    assert not fh.trusted("192.168.1.1") and not fh.trusted("garbage")
    assert fh.strip(headers, "10.9.8.7") == headers
    assert fh.strip(headers, "192.168.1.1") == [("Host", "a")]
    assert ForwardedHeaders(insecure=True).strip(headers, "192.168.1.1") == headers
    assert ForwardedHeaders().strip(headers, "10.9.8.7") == [("Host", "a")]
    assert len(X_HEADERS) == 10


from hypothesis import given, strategies as st  # noqa: E402

SEGMENTS = st.lists(st.sampled_from(["a", "b", ".", "..", "", "%2F", "%41", "c%20d", "~x"]),
                    max_size=8)


@given(SEGMENTS, st.booleans())
def test_sanitized_paths_are_clean_and_stable(segments, trailing):
    target = "/" + "/".join(segments) + ("/" if trailing else "")
    t = normalize_target(target)
    assert t.status == 0
    assert t.path.startswith("/")
    parts = t.path.split("/")[1:]
    assert "." not in parts and ".." not in parts
    assert "//" not in t.path
    # normalising again changes nothing: the server and explain agree on one form
    again = normalize_target(t.request_uri)
    assert (again.path, again.routing_path, again.query) == (t.path, t.routing_path, t.query)


def test_denied_escapes():
    denied = frozenset({"%2F", "%2f", "%00"})
    assert denied_escape("/a%2Fb", denied) == "%2F"
    assert denied_escape("/a%20b%00", denied) == "%00"
    assert denied_escape("/a%20b", denied) is None
    assert denied_escape("/a%2Fb", frozenset()) is None
