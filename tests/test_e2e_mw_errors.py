"""End to end: the errors middleware as Traefik v3.7 runs it (pkg/middlewares/customerrors:
custom_errors.go and the cases of custom_errors_test.go), through a real ``pyroute run``:
a backend answering the status asked for (``/status/N``), and an error-page service that
is a real echo backend (its page is the JSON of the request it received, so the test sees
the page request's target, Host and headers)."""
import json
import socket

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, free_port, read_response


def mw(name, spec):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
            "metadata: {name: %s, namespace: default}\nspec: %s\n" % (name, spec))


MIDDLEWARES = {
    # custom_errors_test.go TestHandler cases
    "e-500": "{errors: {status: [\"500-501\", \"503-599\"], service: {name: pages, port: 80},"
             " query: \"/{status}\"}}",
    "e-single": "{errors: {status: [\"503\"], service: {name: pages, port: 80},"
                " query: \"/{status}\"}}",
    "e-noquery": "{errors: {status: [\"500-599\"], service: {name: pages, port: 80}}}",
    "e-url": "{errors: {status: [\"400-599\"], service: {name: pages, port: 80},"
             " query: \"/page?u={url}&s={status}&o={originalStatus}\"}}",
    "e-rewrite": "{errors: {status: [\"400-599\"], service: {name: pages, port: 80},"
                 " query: \"/{status}-{originalStatus}\","
                 " statusRewrites: {\"418\": 404, \"502-504\": 500}}}",
    "e-headers": "{errors: {status: [\"500\"], service: {name: pages, port: 80},"
                 " query: /h, errorRequestHeaders: [X-Keep, Accept]}}",
    "e-noheaders": "{errors: {status: [\"500\"], service: {name: pages, port: 80},"
                   " query: /h, errorRequestHeaders: []}}",
    "e-nopass": "{errors: {status: [\"500\"], service: {name: pages, port: 80,"
                " passHostHeader: false}, query: /np}}",
    "e-deadpages": "{errors: {status: [\"500\"], service: {name: deadpages, port: 80},"
                   " query: /x}}",
    "e-404": "{errors: {status: [\"403-404\"], service: {name: pages, port: 80},"
             " query: \"/{status}.html\"}}",
    "deny": "{ipAllowList: {sourceRange: [192.0.2.1/32]}}",
    "gz": "{compress: {}}",
    "e-slow": "{errors: {status: [\"500\"], service: {name: pages, port: 80},"
              " query: /slow/400}}",
    # bad options
    "e-badstatus": "{errors: {status: [\"5xx\"], service: {name: pages, port: 80}}}",
    "e-badrewrite": "{errors: {status: [\"500\"], service: {name: pages, port: 80},"
                    " statusRewrites: {\"a-b\": 500}}}",
}


def route(host, mws, svc="be"):
    return ("    - match: Host(`%s.test`)\n      kind: Rule\n"
            "      middlewares: [%s]\n      services: [{name: %s, port: 80}]\n"
            % (host, ", ".join("{name: %s}" % m for m in mws), svc))


def manifests(be, pages, dead_port):
    m = backend_service("be", [be.port]) + "---\n" + backend_service("pages", [pages.port])
    m += "---\n" + backend_service("deadbe", [dead_port])
    m += "---\n" + backend_service("deadpages", [dead_port])
    m += "".join(mw(n, s) for n, s in MIDDLEWARES.items())
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
          "metadata: {name: r, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n")
    for name in MIDDLEWARES:
        if name.startswith("e-"):
            m += route(name, [name])
    m += route("dead", ["e-noquery"], "deadbe")
    m += route("deny", ["e-404", "deny"])
    m += route("deny-outer", ["deny", "e-404"])
    m += route("gz", ["gz", "e-500"])
    return m


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("errors")
    be, pages = Backend("be"), Backend("pages")
    dead = free_port()
    proxy = Pyroute(tmp, manifests(be, pages, dead), workers=2)
    proxy.start()
    yield {"port": proxy.port, "be": be, "pages": pages, "proxy": proxy}
    proxy.stop()
    be.close()
    pages.close()


def get(env, host, path="/", extra="", method="GET", body=b""):
    raw = ("%s %s HTTP/1.1\r\nHost: %s.test\r\n%s" % (method, path, host, extra)).encode()
    if body:
        raw += b"Content-Length: %d\r\n" % len(body)
    raw += b"\r\n" + body
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        s.sendall(raw)
        status, headers, data, _ = read_response(s, head_request=method == "HEAD")
    return status, headers, data


def page(data):
    doc = json.loads(data)
    assert doc["backend"] == "pages"
    return doc


def hdrs(doc, name):
    return [v for k, v in doc["headers"] if k.lower() == name.lower()]


# -- custom_errors_test.go TestHandler -------------------------------------------------------

CASES = [
    # (desc, middleware, backend status, expected status, page target or None = backend's)
    ("no error", "e-500", 200, 200, None),
    ("in the range", "e-500", 500, 500, "/500"),
    ("in the second range", "e-500", 503, 503, "/503"),
    ("between the ranges", "e-500", 502, 502, None),
    ("single code", "e-single", 503, 503, "/503"),
    ("single code, other status", "e-single", 500, 500, None),
    ("no query", "e-noquery", 502, 502, "/"),
    ("status rewrite", "e-rewrite", 418, 404, "/404-418"),
    ("status rewrite range", "e-rewrite", 503, 500, "/500-503"),
    ("no rewrite", "e-rewrite", 400, 400, "/400-400"),
]


@pytest.mark.parametrize("desc,mw_name,code,expected,target", CASES, ids=[c[0] for c in CASES])
def test_handler_cases(env, desc, mw_name, code, expected, target):
    status, headers, data = get(env, mw_name, "/status/%d" % code)
    assert status == expected
    if target is None:
        assert headers.get("x-backend") == "be"
        return
    doc = page(data)
    assert doc["method"] == "GET" and doc["target"] == target
    # the page's own headers and body, not the backend's
    assert headers["x-backend"] == "pages"
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(data)


def test_placeholders_url_status_original_status(env):
    status, headers, data = get(env, "e-url", "/status/404?x=1&y=a%20b")
    assert status == 404
    doc = page(data)
    assert doc["target"] == ("/page?u=http%3A%2F%2Fe-url.test%2Fstatus%2F404%3Fx%3D1%26y%3D"
                             "a%2520b&s=404&o=404")


def test_page_request_carries_the_client_host_and_headers(env):
    status, headers, data = get(env, "e-500", "/status/500",
                                "Authorization: Bearer t\r\nCookie: a=b\r\nX-Any: 1\r\n")
    doc = page(data)
    assert hdrs(doc, "host") == ["e-500.test"]
    # by default every request header goes to the error service (Traefik documents it)
    assert hdrs(doc, "authorization") == ["Bearer t"] and hdrs(doc, "cookie") == ["a=b"]
    assert hdrs(doc, "x-any") == ["1"]


def test_error_request_headers_restrict_what_is_forwarded(env):
    status, headers, data = get(env, "e-headers", "/status/500",
                                "Authorization: Bearer secret\r\nX-Keep: k\r\nAccept: a/b\r\n")
    doc = page(data)
    assert hdrs(doc, "x-keep") == ["k"] and hdrs(doc, "accept") == ["a/b"]
    assert hdrs(doc, "authorization") == []
    status, headers, data = get(env, "e-noheaders", "/status/500",
                                "Authorization: Bearer secret\r\nX-Keep: k\r\n")
    doc = page(data)
    assert hdrs(doc, "authorization") == [] and hdrs(doc, "x-keep") == []
    assert hdrs(doc, "host") == ["e-noheaders.test"]


def test_pass_host_header_false_sends_the_servers_host(env):
    status, headers, data = get(env, "e-nopass", "/status/500")
    doc = page(data)
    assert hdrs(doc, "host") == ["127.0.0.1:%d" % env["pages"].port]


def test_pyroutes_own_502_gets_the_error_page(env):
    # the route's backend is down: Traefik's 502 goes through the errors middleware
    status, headers, data = get(env, "dead", "/anything")
    assert status == 502
    assert page(data)["target"] == "/"


def test_error_service_unreachable_answers_the_code_with_bad_gateway(env):
    status, headers, data = get(env, "e-deadpages", "/status/500")
    assert status == 500 and data == b"Bad Gateway"


def test_a_middleware_answer_after_it_is_caught(env):
    # errors before ipAllowList: the 403 goes back through errors
    status, headers, data = get(env, "deny", "/")
    assert status == 403 and page(data)["target"] == "/403.html"
    # errors after ipAllowList: the request never reached it, the 403 is ipAllowList's
    status, headers, data = get(env, "deny-outer", "/")
    assert status == 403 and b"Forbidden" in data


def test_head_request_gets_the_pages_head(env):
    status, headers, data = get(env, "e-500", "/status/500", method="HEAD")
    assert status == 500 and data == b"" and headers["x-backend"] == "pages"


def test_keep_alive_goes_on_after_an_error_page(env):
    req = (b"GET /status/500 HTTP/1.1\r\nHost: e-500.test\r\n\r\n"
           b"GET /ok HTTP/1.1\r\nHost: e-500.test\r\n\r\n")
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        s.sendall(req)
        st1, h1, b1, rest = read_response(s)
        assert st1 == 500 and page(b1)["target"] == "/500"
        # the second answer may already be in ``rest``
        more = rest
        while b"\r\n\r\n" not in more:
            more += s.recv(65536)

        class Replay:
            def __init__(self, data):
                self.data = data

            def settimeout(self, t):
                s.settimeout(t)

            def recv(self, n):
                if self.data:
                    d, self.data = self.data, b""
                    return d
                return s.recv(n)
        st2, h2, b2, _ = read_response(Replay(more))
    assert st2 == 200 and json.loads(b2)["backend"] == "be"


def test_request_with_a_body(env):
    status, headers, data = get(env, "e-500", "/status/500", method="POST", body=b"x" * 5000)
    assert status == 500 and page(data)["target"] == "/500"


def test_an_outer_compress_compresses_the_error_page(env):
    # compress outside errors: the page (over 1024 bytes: it echoes a long header) is
    # compressed whole; a small one is sent as it is
    import gzip
    status, headers, data = get(env, "gz", "/status/500", "Accept-Encoding: gzip\r\n"
                                "X-Pad: %s\r\n" % ("p" * 3000))
    assert status == 500 and headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(data)
    doc = page(gzip.decompress(data))
    assert doc["target"] == "/500" and hdrs(doc, "x-pad") == ["p" * 3000]
    status, headers, data = get(env, "gz", "/status/500", "Accept-Encoding: gzip\r\n")
    assert status == 500 and "content-encoding" not in headers
    assert page(data)["target"] == "/500"


def test_client_gone_while_the_page_is_fetched(env):
    # the page takes 400 ms; the client leaves after 50: nothing is answered to anyone,
    # the worker goes on (the sub-request's answer finds the exchange cancelled)
    import time
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", env["port"]), timeout=10)
        s.sendall(b"GET /status/500 HTTP/1.1\r\nHost: e-slow.test\r\n\r\n")
        time.sleep(0.05)
        s.close()
    time.sleep(0.6)
    status, headers, data = get(env, "e-slow", "/status/500")
    assert status == 500 and page(data)["target"] == "/slow/400"
    status, headers, data = get(env, "e-500", "/ok")
    assert status == 200
    assert "Traceback" not in env["proxy"].output()


BAD = [("e-badstatus", "status", "5xx"), ("e-badrewrite", "statusRewrites", "a")]


@pytest.mark.parametrize("name,field,text", BAD, ids=[b[0] for b in BAD])
def test_bad_options_are_config_errors_naming_the_field(env, name, field, text):
    status, _, _ = get(env, name, "/status/500")
    assert status == 404
    out = env["proxy"].output()
    lines = [ln for ln in out.splitlines() if name in ln and field in ln]
    assert lines, out[-3000:]
