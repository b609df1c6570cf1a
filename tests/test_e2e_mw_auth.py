"""End to end: basicAuth and digestAuth as Traefik v3.7 runs them (pkg/middlewares/auth and the
go-http-auth fork it pins), through a real ``pyroute run`` (one worker) and a real backend.

Hashes are made here, independently of pyroute: bcrypt with the ``bcrypt`` package, apr1 and
SHA-1 with Apache's ``htpasswd`` when it is installed (and always Traefik's own test vectors),
MD5-crypt ``$1$`` with ``openssl passwd -1``; digest answers are computed by the test (RFC
2617) and by ``curl --digest``. Cases ported from Traefik's basic_auth_test.go and
digest_auth_test.go are marked with the Go test's name."""
import base64
import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import bcrypt
import pytest

from e2e_backend import Backend
from e2e_support import REPO, Pyroute, backend_service, read_response

# Traefik's vectors (basic_auth_test.go, digest_auth_test.go)
APR1_TEST = "test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"          # password "test"
APR1_TEST2 = "test2:$apr1$d9hr9HBB$4HxwgUir3HP4EsggP/QNo0"        # "test2"
APR1_TEST3 = "test3:$apr1$3rJbDP0q$RfzJiorTk78jQ1EcKqWso0"        # "test3"
APR1_TEST2_OVER = "test2:$apr1$mK.GtItK$ncnLYvNLek0weXdxo68690"   # "overridden"
DIGEST_TEST = "test:traefik:a2688e031edb4be6a3797f3882655c05"     # "test"
DIGEST_TEST2 = "test2:traefik:518845800f9e2bfb1f1f740ec24f074e"   # "test2"
DIGEST_TEST3 = "test3:traefik:c8e9f57ce58ecb4424407f665a91646c"   # "test3"
DIGEST_TEST2_OVER = "test2:traefik:8de60a1c52da68ccf41f0c0ffb7c51a0"  # "overridden"
DIGEST_TRAEFIKER = "test:traefiker:a3d334dff2645b914918de78bec50bf4"  # "test2"

HTPASSWD = shutil.which("htpasswd")
OPENSSL = shutil.which("openssl")


def htpasswd(flag, user, password):
    out = subprocess.run([HTPASSWD, "-nb" + flag, user, password], capture_output=True,
                         text=True, check=True).stdout.strip()
    return out


def sha_line(user, password):
    return "%s:{SHA}%s" % (user, base64.b64encode(hashlib.sha1(password.encode()).digest())
                           .decode())


BCRYPT4 = "bc:" + bcrypt.hashpw(b"bc-pass", bcrypt.gensalt(4)).decode()            # $2b$
BCRYPT4_2A = "bc2a:$2a$" + bcrypt.hashpw(b"bc2a-pass", bcrypt.gensalt(4)).decode()[4:]
BCRYPT12 = "slow:" + bcrypt.hashpw(b"slow-pass", bcrypt.gensalt(12)).decode()
EXTRA = {}
if HTPASSWD:
    EXTRA["ht-apr1"] = htpasswd("m", "hta", "h\u00e4ppy pass")     # $apr1$, random salt
    EXTRA["ht-sha"] = htpasswd("s", "hts", "sha-pass")             # {SHA}
    EXTRA["ht-bcrypt"] = subprocess.run(
        [HTPASSWD, "-nbB", "-C", "4", "htb", "bcrypt-pass"], capture_output=True, text=True,
        check=True).stdout.strip()                                 # $2y$
if OPENSSL:
    EXTRA["md5crypt"] = "md5u:" + subprocess.run(
        [OPENSSL, "passwd", "-1", "-salt", "s4ltS4lt", "md5-pass"], capture_output=True,
        text=True, check=True).stdout.strip()                      # $1$


# go-http-auth's own vectors (basic_test.go basicSecrets, md5crypt_test.go Test_MD5Crypt)
GO_HTTP_AUTH_USERS = [
    "test:{SHA}qvTGHdzF6KLavt4PO0gs2a6pQ00=",
    "test2:$apr1$a0j62R97$mYqFkloXH0/UOaUnAiV2b0",
    "test16:$apr1$JI4wh3am$AmhephVqLTUyAVpFQeHZC0",
    "test3:$2y$05$ih3C91zUBSTFcAh2mQnZYuob0UOZVEf16wl/ukgjDhjvj.xgM1WwS",
    "testmd5broken:$apr10.KbAJur$4G9MiqUjDLCuihkMfmg6e1",
    "apache:$apr1$J.w5a/..$IW9y6DR0oO/ADuhlMF5/X1",
    "pass:$1$YeNsbWdH$wvOF8JdqsoiLix754LTW90",
]


def secret(name, lines=None, basic=None):
    if basic is not None:
        return ("---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: default}\n"
                "type: kubernetes.io/basic-auth\nstringData: {username: %s, password: %s}\n"
                % (name, json.dumps(basic[0]), json.dumps(basic[1])))
    data = base64.b64encode("\n".join(lines).encode()).decode()
    return ("---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: default}\n"
            "type: Opaque\ndata: {users: %s}\n" % (name, data))


# name -> (kind, secret lines or ("basic", user, password), extra options)
MIDDLEWARES = {
    "b-apr1": ("basicAuth", [APR1_TEST, APR1_TEST2, APR1_TEST3], ""),
    "b-plain": ("basicAuth", ["test:test"], ""),                  # TestBasicAuthFail
    "b-realm": ("basicAuth", [APR1_TEST], "realm: traefiker"),
    "b-field": ("basicAuth", [APR1_TEST], "headerField: X-Webauth-User"),
    "b-field-lower": ("basicAuth", [APR1_TEST], "headerField: x-user"),
    "b-remove": ("basicAuth", [APR1_TEST], "removeHeader: true"),
    # "Given users have priority over users in the file": the later line wins
    "b-dup": ("basicAuth", [APR1_TEST, APR1_TEST2, APR1_TEST2_OVER], ""),
    "b-hashes": ("basicAuth", [sha_line("sha", "sha-pass"), BCRYPT4, BCRYPT4_2A, "empty:",
                               "emptyhash:{SHA}"] + list(EXTRA.values()), ""),
    "b-slow": ("basicAuth", [BCRYPT12], ""),
    "b-go": ("basicAuth", GO_HTTP_AUTH_USERS, ""),
    "b-k8s": ("basicAuth", ("basic", "kuser", "k8s p\u00e4ss:word"), ""),
    "b-bad": ("basicAuth", ["test"], ""),                         # TestBasicAuthFail
    "b-comment": ("basicAuth", ["#Comment", APR1_TEST], ""),       # a Secret keeps comments
    "d-users": ("digestAuth", [DIGEST_TEST, DIGEST_TEST2], ""),
    "d-over": ("digestAuth", [DIGEST_TEST, DIGEST_TEST2, DIGEST_TEST2_OVER], ""),
    "d-realm": ("digestAuth", [DIGEST_TEST, DIGEST_TRAEFIKER], "realm: traefiker"),
    "d-field": ("digestAuth", [DIGEST_TEST], "headerField: x-user"),
    "d-remove": ("digestAuth", [DIGEST_TEST], "removeHeader: true"),
    "d-bad": ("digestAuth", ["test"], ""),                        # TestDigestAuthError
}


def manifests(backend):
    m = backend_service("svc", [backend.port])
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: outer-hdr, namespace: default}\n"
          "spec: {headers: {customResponseHeaders: {X-Outer: outer-value}}}\n")
    routes = ["    - match: Host(`open.test`)\n      kind: Rule\n"
              "      services: [{name: svc, port: 80}]\n",
              # a headers middleware before the auth one: its response headers reach the 401
              "    - match: Host(`outer.test`)\n      kind: Rule\n"
              "      middlewares: [{name: outer-hdr}, {name: b-go}]\n"
              "      services: [{name: svc, port: 80}]\n",
              # a service-level basicAuth (runs in front of that service)
              "    - match: Host(`svc-auth.test`)\n      kind: Rule\n"
              "      services: [{name: svc, port: 80, middlewares: [{name: b-go}]}]\n"]
    for name, (kind, lines, extra) in MIDDLEWARES.items():
        if isinstance(lines, tuple):
            m += secret("s-" + name, basic=lines[1:])
        else:
            m += secret("s-" + name, lines)
        m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
              "metadata: {name: %s, namespace: default}\nspec:\n  %s:\n    secret: s-%s\n"
              % (name, kind, name))
        if extra:
            m += "    %s\n" % extra
        routes.append("    - match: Host(`%s.test`)\n      kind: Rule\n"
                      "      middlewares: [{name: %s}]\n      services: [{name: svc, port: 80}]\n"
                      % (name, name))
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
          "metadata: {name: auth, namespace: default}\nspec:\n  entryPoints: [web]\n"
          "  routes:\n" + "".join(routes))
    return m


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auth")
    be = Backend("be")
    proxy = Pyroute(tmp, manifests(be), workers=1)
    proxy.start()
    yield {"port": proxy.port, "be": be, "proxy": proxy, "tmp": tmp}
    proxy.stop()
    be.close()


def send(env, raw, head_request=False):
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=15) as s:
        s.sendall(raw if isinstance(raw, bytes) else raw.encode("utf-8"))
        status, headers, body, _ = read_response(s, head_request, timeout=15)
        return status, headers, body


def get(env, host, path="/", extra="", method="GET"):
    return send(env, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (method, path, host, extra),
                head_request=method == "HEAD")


def basic(user, password):
    return "Authorization: Basic %s\r\n" % base64.b64encode(
        ("%s:%s" % (user, password)).encode()).decode()


def upstream(body):
    return json.loads(body)


def header_lines(doc, name):
    return [v for k, v in doc["headers"] if k.lower() == name.lower()]


def assert_basic_401(status, headers, body, realm="traefik"):
    # go-http-auth RequireAuth
    assert status == 401
    assert headers["www-authenticate"] == 'Basic realm="%s"' % realm
    assert headers["content-type"] == "text/plain"
    assert body == b"401 Unauthorized\n"


# -- basicAuth -------------------------------------------------------------------------------

def test_basic_success_forwards_the_authorization_header(env):
    # TestBasicAuthSuccess, TestBasicAuthHeaderPresent
    status, _, body = get(env, "b-apr1.test", extra=basic("test", "test"))
    assert status == 200
    assert header_lines(upstream(body), "Authorization") == [
        "Basic " + base64.b64encode(b"test:test").decode()]


@pytest.mark.parametrize("user,password", [("test", "test"), ("test2", "test2"),
                                           ("test3", "test3")])
def test_basic_every_user_of_the_list(env, user, password):
    # TestBasicAuthUsersFromFile "Merges given users with users from the file"
    assert get(env, "b-apr1.test", extra=basic(user, password))[0] == 200


def test_basic_last_line_wins_for_a_user_declared_twice(env):
    # TestBasicAuthUsersFromFile "Given users have priority over users in the file"
    assert get(env, "b-dup.test", extra=basic("test2", "overridden"))[0] == 200
    assert_basic_401(*get(env, "b-dup.test", extra=basic("test2", "test2")))
    assert get(env, "b-dup.test", extra=basic("test", "test"))[0] == 200


def test_basic_credentials_of_another_realm_are_401(env):
    # "test:test" opens realm traefiker (b-realm) but not b-go, where test's password differs
    assert get(env, "b-realm.test", extra=basic("test", "test"))[0] == 200
    assert_basic_401(*get(env, "b-go.test", extra=basic("test", "test")))


def test_basic_plain_text_password_never_matches(env):
    # TestBasicAuthFail: "test:test" is no htpasswd hash
    assert_basic_401(*get(env, "b-plain.test", extra=basic("test", "test")))


def test_basic_custom_realm(env):
    # TestBasicAuthUsersFromFile "Should authenticate the correct user based on the realm"
    assert get(env, "b-realm.test", extra=basic("test", "test"))[0] == 200
    assert_basic_401(*get(env, "b-realm.test", extra=basic("foo", "foo")), realm="traefiker")


HASH_CASES = [("sha", "sha-pass"), ("bc", "bc-pass"), ("bc2a", "bc2a-pass")]
if "ht-apr1" in EXTRA:
    HASH_CASES += [("hta", "h\u00e4ppy pass"), ("hts", "sha-pass"), ("htb", "bcrypt-pass")]
if "md5crypt" in EXTRA:
    HASH_CASES += [("md5u", "md5-pass")]


@pytest.mark.parametrize("user,password", HASH_CASES)
def test_basic_each_hash_format(env, user, password):
    assert get(env, "b-hashes.test", extra=basic(user, password))[0] == 200
    assert_basic_401(*get(env, "b-hashes.test", extra=basic(user, password + "x")))
    assert_basic_401(*get(env, "b-hashes.test", extra=basic(user, password[:-1])))


@pytest.mark.parametrize("user,password", [
    ("test", "hello"), ("test2", "hello2"), ("test3", "hello3"), ("test16", "topsecret"),
    ("apache", "apache"), ("pass", "pass")])
def test_basic_go_http_auth_vectors(env, user, password):
    # go-http-auth TestBasicCheckAuth and Test_MD5Crypt
    assert get(env, "b-go.test", extra=basic(user, password))[0] == 200
    assert_basic_401(*get(env, "b-go.test", extra=basic(user, password.upper())))


@pytest.mark.parametrize("extra", ["", "Authorization: Digest blabla ololo\r\n",
                                   "Authorization: Basic !@#\r\n",
                                   basic("testmd5broken", "hello")])
def test_basic_go_http_auth_bad_headers(env, extra):
    # go-http-auth TestBasicCheckAuthFailsOnBadHeaders; a hash without its third "$"
    assert_basic_401(*get(env, "b-go.test", extra=extra))


@pytest.mark.parametrize("user,password,status", [
    ("test", "hello", 200), ("test", "nope", 401),          # {SHA}: answered at once
    ("test3", "hello3", 200), ("test3", "nope", 401),       # bcrypt: answered after waiting
    ("nobody", "x", 401)])
def test_basic_answer_passes_through_the_middlewares_before(env, user, password, status):
    # Traefik: the 401 is written through the headers middleware's ResponseWriter
    st, headers, _ = get(env, "outer.test", extra=basic(user, password))
    assert st == status
    assert headers.get("x-outer") == "outer-value"


@pytest.mark.parametrize("user,password,status", [
    ("test3", "hello3", 200), ("test3", "nope", 401), ("test", "hello", 200),
    ("nobody", "x", 401)])
def test_basic_as_a_service_middleware(env, user, password, status):
    assert get(env, "svc-auth.test", extra=basic(user, password))[0] == status


def test_basic_waiting_request_keeps_its_body_and_pipelined_followers(env):
    # a POST whose bcrypt check waits: its body goes upstream once it resumes, and requests
    # pipelined behind it are answered after it, in order
    body = b"x" * 5000
    first = ("POST /p1 HTTP/1.1\r\nHost: b-hashes.test\r\n%sContent-Length: %d\r\n\r\n"
             % (basic("bc", "bc-pass"), len(body))).encode() + body
    second = ("GET /p2 HTTP/1.1\r\nHost: b-hashes.test\r\n%s\r\n"
              % basic("bc", "wrong")).encode()
    third = b"GET /p3 HTTP/1.1\r\nHost: open.test\r\n\r\n"
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=15) as s:
        s.sendall(first + second + third)
        reader = BufferedSocket(s)
        status, _, got, reader.rest = read_response(reader)
        assert status == 200
        doc = upstream(got)
        assert (doc["method"], doc["target"], doc["body"]) == ("POST", "/p1", body.decode())
        status, _, _, reader.rest = read_response(reader)
        assert status == 401
        status, _, got, _ = read_response(reader)
        assert status == 200 and upstream(got)["target"] == "/p3"


class BufferedSocket:
    """A socket with bytes already read in front (what read_response left over)."""

    def __init__(self, sock):
        self.sock, self.rest = sock, b""

    def settimeout(self, t):
        self.sock.settimeout(t)

    def recv(self, n):
        if self.rest:
            data, self.rest = self.rest, b""
            return data
        return self.sock.recv(n)


def test_basic_client_gone_while_bcrypt_runs(env):
    # the check finishes for nobody (ex.cancelled): the worker goes on serving
    for i in range(3):
        s = socket.create_connection(("127.0.0.1", env["port"]), timeout=15)
        s.sendall(("GET / HTTP/1.1\r\nHost: b-slow.test\r\n%s\r\n"
                   % basic("slow", "gone-%d" % i)).encode())
        s.close()
    time.sleep(1.5)
    assert get(env, "b-slow.test", extra=basic("slow", "slow-pass"))[0] == 200
    assert get(env, "open.test")[0] == 200
    assert "Traceback" not in env["proxy"].output()


def test_basic_head_request_after_a_wait_has_no_body(env):
    status, headers, body = get(env, "b-hashes.test", method="HEAD", extra=basic("bc", "nope"))
    assert status == 401 and body == b"" and headers["content-length"] == "17"


def test_basic_hash_formats_made_by_htpasswd_are_there():
    # the independent hashes this file relies on where the tools exist (CI installs them)
    if HTPASSWD:
        assert EXTRA["ht-apr1"].split(":", 1)[1].startswith("$apr1$")
        assert EXTRA["ht-bcrypt"].split(":", 1)[1].startswith("$2y$")
    if OPENSSL:
        assert EXTRA["md5crypt"].split(":", 1)[1].startswith("$1$s4ltS4lt$")


def test_basic_users_from_a_kubernetes_basic_auth_secret(env):
    # Traefik's CRD provider: username/password -> "user:{SHA}base64(sha1(password))"
    assert get(env, "b-k8s.test", extra=basic("kuser", "k8s p\u00e4ss:word"))[0] == 200
    assert_basic_401(*get(env, "b-k8s.test", extra=basic("kuser", "k8s p\u00e4ss")))


def test_basic_header_field_carries_the_user(env):
    # TestBasicAuthUserHeader; a client's own value of the header never reaches the backend
    status, _, body = get(env, "b-field.test", extra=basic("test", "test")
                          + "X-Webauth-User: admin\r\nx-webauth-user: root\r\n")
    assert status == 200
    assert header_lines(upstream(body), "X-Webauth-User") == ["test"]


def test_basic_header_field_canonical(env):
    # TestBasicAuthUserHeaderCanonical: the client's X-User is gone, x-user holds the user
    status, _, body = get(env, "b-field-lower.test", extra=basic("test", "test")
                          + "X-User: admin\r\n")
    assert status == 200
    doc = upstream(body)
    assert [(k, v) for k, v in doc["headers"] if k.lower() == "x-user"] == [("x-user", "test")]


def test_basic_header_field_is_not_trusted_on_failure(env):
    status, _, _ = get(env, "b-field.test", extra="X-Webauth-User: test\r\n")
    assert status == 401


def test_basic_remove_header(env):
    # TestBasicAuthHeaderRemoved
    status, _, body = get(env, "b-remove.test", extra=basic("test", "test"))
    assert status == 200
    assert header_lines(upstream(body), "Authorization") == []


@pytest.mark.parametrize("extra", [
    "",                                                     # no header
    "Authorization: Bearer dGVzdDp0ZXN0\r\n",               # another scheme
    "Authorization: Digest dGVzdDp0ZXN0\r\n",
    "Authorization: Basic\r\n",
    "Authorization: Basic !!!!\r\n",                        # not base64
    "Authorization: Basic dGVzdDp0ZXN0=\r\n",               # bad padding
    "Authorization: Basic dGVzdDp0ZXN0 x\r\n",              # trailing garbage
    "Authorization: Basic  dGVzdDp0ZXN0\r\n",               # two spaces (Go: no trimming)
    "Authorization: Basic dGVzdA==\r\n",                    # "test": no colon
    "Authorization: BasicdGVzdDp0ZXN0\r\n",
    "Authorization: Basic %s\r\n" % base64.urlsafe_b64encode(b"test:te\xfb\xff").decode(),
])
def test_basic_malformed_authorization_is_401(env, extra):
    assert_basic_401(*get(env, "b-apr1.test", extra=extra))


def test_basic_scheme_is_case_insensitive(env):
    # Go's Request.BasicAuth: "Basic " compared with EqualFold
    token = base64.b64encode(b"test:test").decode()
    assert get(env, "b-apr1.test", extra="Authorization: bAsIc %s\r\n" % token)[0] == 200


def test_basic_only_the_first_authorization_header_counts(env):
    good, bad = basic("test", "test"), basic("test", "wrong")
    assert get(env, "b-apr1.test", extra=bad + good)[0] == 401
    assert get(env, "b-apr1.test", extra=good + bad)[0] == 200


@pytest.mark.parametrize("user,password", [
    ("foo", "foo"),                 # unknown user (TestBasicAuthUsersFromFile)
    ("test", "wrong"),
    ("test", ""),
    ("", ""),
    ("test ", "test"),
    ("TEST", "test"),
    ("empty", ""),                  # a user with an empty hash never authenticates
    ("empty", "anything"),
    ("emptyhash", ""),              # "{SHA}" alone: nothing hashes to ""
    ("bc", "bc-pass\x00"),
])
def test_basic_wrong_credentials_are_401(env, user, password):
    host = "b-hashes.test" if user in ("empty", "emptyhash", "bc") else "b-apr1.test"
    assert_basic_401(*get(env, host, extra=basic(user, password)))


def test_basic_head_request_gets_the_challenge_without_body(env):
    status, headers, body = get(env, "b-apr1.test", method="HEAD")
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="traefik"'
    assert body == b""


def test_basic_failure_keeps_the_connection_and_then_authenticates(env):
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=15) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: b-hashes.test\r\n\r\n")
        status, _, _, rest = read_response(s)
        assert status == 401 and rest == b""
        s.sendall(("GET / HTTP/1.1\r\nHost: b-hashes.test\r\n%s\r\n"
                   % basic("bc", "bc-pass")).encode())
        assert read_response(s)[0] == 200


def test_basic_configuration_errors_disable_the_router(env):
    # TestBasicAuthFail / TestNewBasicEmpty: a line without ':' is refused (the router with
    # it is not served); Traefik's loadAuthCredentials keeps a "#" line, which is malformed
    assert get(env, "b-bad.test", extra=basic("test", "test"))[0] == 404
    assert get(env, "b-comment.test", extra=basic("test", "test"))[0] == 404
    assert get(env, "d-bad.test")[0] == 404


def test_basic_bcrypt_result_is_remembered(env):
    # a keep-alive client pays the cost-12 check once; a failure is never remembered
    # (a spelling of the scheme no other test uses: a value no other test had remembered)
    good = ("GET / HTTP/1.1\r\nHost: b-slow.test\r\n%s\r\n"
            % basic("slow", "slow-pass").replace("Basic", "BASIC")).encode()
    bad = ("GET / HTTP/1.1\r\nHost: b-slow.test\r\n%s\r\n" % basic("slow", "nope")).encode()
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=30) as s:
        t0 = time.monotonic()
        s.sendall(bad)
        assert read_response(s, timeout=30)[0] == 401
        t1 = time.monotonic()
        s.sendall(good)
        assert read_response(s, timeout=30)[0] == 200
        t2 = time.monotonic()
        s.sendall(good)
        assert read_response(s, timeout=30)[0] == 200
        t3 = time.monotonic()
        s.sendall(bad)
        assert read_response(s, timeout=30)[0] == 401
        t4 = time.monotonic()
    first, cached = t2 - t1, t3 - t2
    assert cached < first / 3, (first, cached)
    assert t4 - t3 > cached, "a failure must be checked again"
    assert t1 - t0 > cached


def test_slow_bcrypt_does_not_stall_other_requests(env):
    """Cost-12 checks run in the thread pool: a client of a route without auth on the same
    (single) worker is answered meanwhile as fast as usual."""
    h = BCRYPT12.split(":", 1)[1].encode()
    t = time.monotonic()
    bcrypt.checkpw(b"x", h)
    one_check = time.monotonic() - t          # what one check costs on this machine now
    stop = threading.Event()
    statuses = []

    def attacker(n):
        # wrong passwords, all different: nothing cached, nothing shared
        i = 0
        while not stop.is_set():
            i += 1
            statuses.append(get(env, "b-slow.test", extra=basic("slow", "p%d-%d" % (n, i)))[0])

    threads = [threading.Thread(target=attacker, args=(n,)) for n in range(3)]
    for th in threads:
        th.start()
    time.sleep(0.2)
    latencies = []
    try:
        with socket.create_connection(("127.0.0.1", env["port"]), timeout=15) as s:
            for _ in range(15):
                t = time.monotonic()
                s.sendall(b"GET / HTTP/1.1\r\nHost: open.test\r\n\r\n")
                assert read_response(s)[0] == 200
                latencies.append(time.monotonic() - t)
                time.sleep(0.05)
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert statuses and set(statuses) == {401}
    latencies.sort()
    # on the loop, each check would hold the worker for ~one_check (and they queue)
    assert latencies[len(latencies) // 2] < one_check / 4, (latencies, one_check)
    assert latencies[-2] < one_check / 2, (latencies, one_check)


def test_check_reports_auth_problems(env):
    out = subprocess.run(
        [sys.executable, "-m", "pyroute", "check", "-c", str(env["proxy"].static),
         str(env["proxy"].mdir)], capture_output=True, text=True, cwd=str(REPO))
    text = out.stdout + out.stderr
    assert re.search(r"Middleware default/b-bad: spec\.basicAuth\.users: error parsing "
                     r"BasicUser: test", text), text
    assert re.search(r"Middleware default/b-comment: spec\.basicAuth\.users: error parsing "
                     r"BasicUser: #Comment", text), text
    assert re.search(r"Middleware default/d-bad: spec\.digestAuth\.users: error parsing "
                     r"DigestUser: test", text), text
    assert re.search(r"Middleware default/b-dup: spec\.basicAuth\.users: warning: user test2 is "
                     r"declared "
                     r"more than once", text), text


# -- digestAuth ------------------------------------------------------------------------------

CHALLENGE = re.compile(r'^Digest realm="([^"]*)", nonce="([A-Za-z0-9+/=]{16})", '
                       r'opaque="([A-Za-z0-9+/=]{16})", (stale="true", )?algorithm="MD5", '
                       r'qop="auth"$')


def md5(*parts):
    return hashlib.md5(":".join(parts).encode()).hexdigest()


class DigestClient:
    """An RFC 2617 client on one keep-alive connection."""

    def __init__(self, env, host):
        self.env, self.host = env, host
        self.sock = socket.create_connection(("127.0.0.1", env["port"]), timeout=15)
        self.nc = 0

    def close(self):
        self.sock.close()

    def raw(self, extra, path="/", method="GET"):
        self.sock.sendall(("%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
                           % (method, path, self.host, extra)).encode())
        status, headers, body, _ = read_response(self.sock, method == "HEAD")
        return status, headers, body

    def challenge(self, path="/"):
        status, headers, body = self.raw("", path)
        assert status == 401 and body == b"401 Unauthorized\n"
        m = CHALLENGE.match(headers["www-authenticate"])
        assert m, headers["www-authenticate"]
        self.realm, self.nonce, self.opaque = m.group(1), m.group(2), m.group(3)
        return m

    def authorization(self, user, password, uri="/", method="GET", nc=None, realm=None,
                      ha1=None, **over):
        if nc is None:
            self.nc += 1
            nc = self.nc
        fields = {"username": user, "realm": realm or self.realm, "nonce": self.nonce,
                  "uri": uri, "algorithm": "MD5", "qop": "auth",
                  "nc": nc if isinstance(nc, str) else "%08x" % nc,
                  "cnonce": "0a4f113b", "opaque": self.opaque}
        fields.update(over)
        if ha1 is None:
            ha1 = md5(user, realm or self.realm, password)
        fields.setdefault("response", md5(ha1, fields["nonce"], fields["nc"], fields["cnonce"],
                                          fields["qop"] or "", md5(method, uri)))
        quoted = ("username", "realm", "nonce", "uri", "cnonce", "response", "opaque")
        return "Authorization: Digest %s\r\n" % ", ".join(
            ('%s="%s"' if k in quoted else "%s=%s") % (k, v) for k, v in fields.items()
            if v is not None)

    def get(self, user, password, path="/", uri=None, method="GET", **kw):
        return self.raw(self.authorization(user, password, uri or path, method, **kw), path,
                        method)


@pytest.fixture
def digest(env):
    clients = []

    def make(host):
        c = DigestClient(env, host)
        clients.append(c)
        c.challenge()
        return c
    yield make
    for c in clients:
        c.close()


@pytest.mark.parametrize("host,user,password", [
    ("d-users", "test", "test"), ("d-users", "test2", "test2"),   # "Finds the users"
    ("d-over", "test2", "overridden"),          # "Given users have priority"
    ("d-realm", "test", "test2"),               # "Should authenticate the correct user ..."
])
def test_digest_users(env, digest, host, user, password):
    c = digest(host + ".test")
    assert c.realm == ("traefiker" if host == "d-realm" else "traefik")
    status, headers, body = c.get(user, password)
    assert status == 200, (status, body)
    assert "authentication-info" not in headers    # Traefik discards go-http-auth's authinfo
    status, _, _ = c.get("foo", "foo")
    assert status == 401


def test_digest_overridden_password_is_gone(env, digest):
    c = digest("d-over.test")
    assert c.get("test2", "test2")[0] == 401


def test_digest_basic_credentials_are_refused(env):
    # TestDigestAuthFail
    status, headers, _ = get(env, "d-users.test", extra=basic("test", "test"))
    assert status == 401 and CHALLENGE.match(headers["www-authenticate"])


def test_digest_each_challenge_has_a_new_nonce_and_the_same_opaque(env):
    a = get(env, "d-users.test")[1]["www-authenticate"]
    b = get(env, "d-users.test")[1]["www-authenticate"]
    ma, mb = CHALLENGE.match(a), CHALLENGE.match(b)
    assert ma.group(2) != mb.group(2) and ma.group(3) == mb.group(3)
    assert ma.group(4) is None


def test_digest_nonce_count_replay_and_stale(env, digest):
    c = digest("d-users.test")
    assert c.get("test", "test", nc=1)[0] == 200
    # the same count again: a replay, a plain new challenge
    status, headers, _ = c.get("test", "test", nc=1)
    assert status == 401 and CHALLENGE.match(headers["www-authenticate"]).group(4) is None
    assert c.get("test", "test", nc=3)[0] == 200
    # an older count (out-of-order pipelining): stale="true"
    status, headers, _ = c.get("test", "test", nc=2)
    m = CHALLENGE.match(headers["www-authenticate"])
    assert status == 401 and m.group(4) == 'stale="true", '
    # the client retries with the new nonce, without asking its user
    c.nonce = m.group(2)
    assert c.get("test", "test", nc=1)[0] == 200


def test_digest_replayed_request_is_refused(env, digest):
    c = digest("d-users.test")
    auth = c.authorization("test", "test")
    assert c.raw(auth)[0] == 200
    assert c.raw(auth)[0] == 401
    # from another connection too
    assert get(env, "d-users.test", extra=auth)[0] == 401


def test_digest_nonce_count_zero_cannot_be_replayed(env, digest):
    # go-http-auth lets nc=0 repeat (its "unseen" marker); pyroute refuses the replay
    c = digest("d-users.test")
    assert c.get("test", "test", nc=0)[0] == 200
    assert c.get("test", "test", nc=0)[0] == 401


@pytest.mark.parametrize("over", [
    {"opaque": "AAAAAAAAAAAAAAAA"},
    {"opaque": None},
    {"algorithm": "MD5-sess"},
    {"algorithm": "md5"},
    {"qop": None},
    {"qop": "auth-int"},
    {"response": "0" * 32},
    {"nonce": "AAAAAAAAAAAAAAAA"},          # never issued
    {"nc": "0x000001"},
    {"nc": "zz"},
    {"nc": "1" * 17},                        # over 64 bits
    {"uri": "/other"},                       # not the request's
    {"username": "nobody"},
])
def test_digest_bad_answers_are_401(env, digest, over):
    c = digest("d-users.test")
    status, headers, _ = c.get("test", "test", **over)
    assert status == 401
    assert CHALLENGE.match(headers["www-authenticate"]).group(4) is None


def test_digest_unknown_user_with_an_empty_ha1_is_refused(env, digest):
    # go-http-auth computes KD with HA1 = "" for an unknown user (such an answer would pass
    # there); pyroute never authenticates a user it does not have
    c = digest("d-users.test")
    assert c.get("nobody", "", ha1="")[0] == 401


def test_digest_answer_for_another_realm_is_refused(env, digest):
    # the realm is the middleware's: an HA1 of another realm does not match, and a user of
    # another realm only is unknown
    c = digest("d-realm.test")
    assert c.get("test", "test", realm="traefik")[0] == 401     # traefik's HA1 for "test"
    assert c.get("test", "test")[0] == 401      # test's password in realm traefiker is test2


def test_digest_uri_may_be_a_path_prefix_as_go_http_auth(env, digest):
    c = digest("d-users.test")
    assert c.get("test", "test", path="/sub/page?q=1", uri="/sub/")[0] == 200
    assert c.get("test", "test", path="/sub/page", uri="http://d-users.test/sub")[0] == 200
    assert c.get("test", "test", path="/sub/page", uri="/sub/page/more")[0] == 401
    assert c.get("test", "test", path="/sub/page", uri="/other")[0] == 401
    assert c.get("test", "test", path="/sub/page", uri="/s%zz")[0] == 401


def test_digest_method_is_part_of_the_answer(env, digest):
    c = digest("d-users.test")
    assert c.get("test", "test", method="HEAD")[0] == 200
    auth = c.authorization("test", "test", method="POST")
    assert c.raw(auth)[0] == 401


@pytest.mark.parametrize("value", ['Digest username=', 'Digest username="test", nonce=',
                                   'Digest realm="'])
def test_digest_empty_parameter_value_is_500_as_traefik(env, value):
    # go-http-auth ParsePairs indexes the empty value: Traefik's recovery answers 500
    status, _, body = get(env, "d-users.test", extra="Authorization: %s\r\n" % value)
    assert status == 500 and body == b"Internal Server Error\n"


@pytest.mark.parametrize("value", ["digest username=\"test\"", "Digest", "Basic x",
                                   "Digest ,,,", 'Digest username="test"'])
def test_digest_other_malformed_headers_are_401(env, value):
    status, headers, _ = get(env, "d-users.test", extra="Authorization: %s\r\n" % value)
    assert status == 401 and CHALLENGE.match(headers["www-authenticate"])


def test_digest_header_field_canonical(env, digest):
    # TestDigestAuthUserHeaderCanonical
    c = digest("d-field.test")
    status, _, body = c.raw(c.authorization("test", "test") + "X-User: admin\r\n")
    assert status == 200
    doc = upstream(body)
    assert [(k, v) for k, v in doc["headers"] if k.lower() == "x-user"] == [("x-user", "test")]
    assert header_lines(doc, "Authorization")


def test_digest_remove_header(env, digest):
    c = digest("d-remove.test")
    status, _, body = c.get("test", "test")
    assert status == 200 and header_lines(upstream(body), "Authorization") == []


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_digest_parameters_are_parsed_as_go_http_auth(env, digest):
    # go-http-auth TestParsePairs: a backslash escape inside quotes keeps the character, a
    # comma inside quotes does not split, unquoted values are taken as they are
    c = digest("d-users.test")
    path = "/css?family=Sans:400,700|Code"
    auth = c.authorization("test", "test", path)
    auth = auth.replace('username="test"', r'username="\t\est"')
    status, _, _ = c.raw(auth, path)
    assert status == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_digest_with_curl(env):
    url = "http://127.0.0.1:%d/sub/x?y=1" % env["port"]
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--digest",
                          "-u", "test2:test2", "-H", "Host: d-users.test", url],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout == "200"
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--digest",
                          "-u", "test2:nope", "-H", "Host: d-users.test", url],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout == "401"


def explain(env, host, *headers):
    out = subprocess.run(
        [sys.executable, "-m", "pyroute", "explain", "--json", "-c", str(env["proxy"].static),
         str(env["proxy"].mdir), "GET", "http://%s/" % host]
        + [a for h in headers for a in ("-H", h)], capture_output=True, text=True,
        cwd=str(REPO), timeout=60)
    return json.loads(out.stdout)


def test_explain_decides_basic_auth_with_the_servers_check(env):
    # pyroute explain and pyroute run reach one verdict (bcrypt included)
    good = basic("bc", "bc-pass").strip()
    bad = basic("bc", "nope").strip()
    res = explain(env, "b-hashes.test", good)
    assert res["status"] is None and res["service"]["servers"], res     # forwarded
    for hdr, why in ((bad, "wrong password for bc"), (basic("zz", "x").strip(), "unknown user"),
                     ("Authorization: Bearer x", "no Basic credentials")):
        res = explain(env, "b-hashes.test", hdr)
        assert res["status"] == 401 and any(why in n for n in res["notes"]), res
        assert get(env, "b-hashes.test", extra=hdr + "\r\n")[0] == 401
    assert get(env, "b-hashes.test", extra=good + "\r\n")[0] == 200
    assert explain(env, "d-users.test")["status"] == 401


def test_basic_cache_is_dropped_when_the_hash_changes_at_reload(tmp_path):
    be = Backend("be")
    old = bcrypt.hashpw(b"old-pass", bcrypt.gensalt(4)).decode()
    new = bcrypt.hashpw(b"new-pass", bcrypt.gensalt(4)).decode()

    def config(hash_):
        return (backend_service("svc", [be.port]) + secret("users", ["u:" + hash_])
                + "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
                  "metadata: {name: auth, namespace: default}\nspec:\n  basicAuth:\n"
                  "    secret: users\n"
                + "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
                  "metadata: {name: r, namespace: default}\nspec:\n  entryPoints: [web]\n"
                  "  routes:\n    - match: Host(`c.test`)\n      kind: Rule\n"
                  "      middlewares: [{name: auth}]\n      services: [{name: svc, port: 80}]\n")
    proxy = Pyroute(tmp_path, config(old), workers=1)
    proxy.start()
    try:
        req_old = ("GET / HTTP/1.1\r\nHost: c.test\r\n%s\r\n" % basic("u", "old-pass")).encode()
        req_new = ("GET / HTTP/1.1\r\nHost: c.test\r\n%s\r\n" % basic("u", "new-pass")).encode()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as s:
            for _ in range(2):              # verified, then remembered
                s.sendall(req_old)
                assert read_response(s)[0] == 200
            mark = len(proxy.output())
            proxy.write_manifests(config(new))
            end = time.time() + 20
            while "configuration reloaded" not in proxy.output()[mark:]:
                assert time.time() < end, proxy.output()[-2000:]
                time.sleep(0.05)
            while True:                     # the worker swaps its tables between events
                s.sendall(req_new)
                if read_response(s)[0] == 200:
                    break
                assert time.time() < end
                time.sleep(0.05)
            s.sendall(req_old)              # the same keep-alive connection, remembered before
            assert read_response(s)[0] == 401
    finally:
        proxy.stop()
        be.close()


def test_digest_across_workers(tmp_path):
    """Two workers: a nonce one issued, answered on a connection the other accepted, is
    recognised (same opaque; a correct answer gets stale="true" and a nonce of its own, never
    a plain re-prompt), and a replay is refused whichever worker gets it."""
    be = Backend("be")
    m = (backend_service("svc", [be.port]) + secret("users", [DIGEST_TEST])
         + "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
           "metadata: {name: auth, namespace: default}\nspec:\n  digestAuth:\n"
           "    secret: users\n"
         + "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
           "metadata: {name: r, namespace: default}\nspec:\n  entryPoints: [web]\n"
           "  routes:\n    - match: Host(`w.test`)\n      kind: Rule\n"
           "      middlewares: [{name: auth}]\n      services: [{name: svc, port: 80}]\n")
    proxy = Pyroute(tmp_path, m, workers=2)
    proxy.start()
    env = {"port": proxy.port}
    try:
        first = DigestClient(env, "w.test")
        first.challenge()
        opaque, nonce = first.opaque, first.nonce
        first.close()
        nc = 0
        for _ in range(12):                 # new connections: either worker accepts them
            c = DigestClient(env, "w.test")
            c.realm, c.nonce, c.opaque = "traefik", nonce, opaque
            nc += 1
            status, headers, _ = c.get("test", "test", nc=nc)
            if status == 401:
                m2 = CHALLENGE.match(headers["www-authenticate"])
                assert m2.group(4) == 'stale="true", ' and m2.group(3) == opaque, headers
                c.nonce = m2.group(2)       # the client retries without asking its user
                status = c.get("test", "test", nc=1)[0]
            assert status == 200
            c.close()
        # a request that succeeded, replayed on new connections: refused everywhere
        c = DigestClient(env, "w.test")
        c.challenge()
        auth = c.authorization("test", "test")
        assert c.raw(auth)[0] == 200
        c.close()
        for _ in range(6):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as s:
                s.sendall(("GET / HTTP/1.1\r\nHost: w.test\r\n%s\r\n" % auth).encode())
                assert read_response(s)[0] == 401
    finally:
        proxy.stop()
        be.close()
