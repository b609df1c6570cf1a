"""End to end: a mirroring TraefikService — deterministic percentages, bodies copied, and a
mirror that never answers does not delay the main response."""
import json
import socket
import time

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, get, request


def test_mirroring_copies_requests_without_touching_the_main_response(tmp_path):
    main, mirror = Backend("main"), Backend("mirror")
    hang = socket.socket()          # a mirror that accepts and never answers
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    m = backend_service("main", [main.port]) + "---\n" + backend_service("copy", [mirror.port])
    m += "---\n" + backend_service("hang", [hang.getsockname()[1]])
    m += """---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: mirrored, namespace: default}
spec:
  mirroring:
    name: main
    port: 80
    mirrors:
      - {name: copy, port: 80, percent: 50}
      - {name: hang, port: 80, percent: 100}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`m.test`)
      kind: Rule
      services: [{name: mirrored, kind: TraefikService}]
"""
    proxy = Pyroute(tmp_path, m)
    try:
        proxy.start()
        t0 = time.time()
        for i in range(4):
            status, _, body = get(proxy.port, "/r%d" % i, "m.test")
            assert status == 200 and json.loads(body)["backend"] == "main"
        status, _, body = request(proxy.port, b"POST /post HTTP/1.1\r\nHost: m.test\r\n"
                                  b"Content-Length: 4\r\n\r\nbody")
        assert status == 200 and json.loads(body)["body"] == "body"
        assert time.time() - t0 < 3        # the silent mirror delayed nothing
        end = time.time() + 5
        while len(mirror.requests) < 3 and time.time() < end:
            time.sleep(0.05)
        # Traefik's deterministic 50%: requests 1, 3 and 5 of the sequence
        got = [(r[0], r[1], r[3]) for r in mirror.requests]
        assert got == [("GET", "/r0", b""), ("GET", "/r2", b""), ("POST", "/post", b"body")]
        assert len(main.requests) == 5
    finally:
        proxy.stop()
        main.close()
        mirror.close()
        hang.close()
