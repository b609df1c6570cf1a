"""``pyroute check``: one problem per line, exit status, --dump; the bundled demo is clean."""
import json
import os
import subprocess
import sys

import pyroute
from manifests_util import service, write

DEMO = os.path.join(os.path.dirname(pyroute.__file__), "demo")

BROKEN = """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: shop, namespace: web}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`shop.example.com`)
      services:
        - name: cart
          port: 8080
    - match: Host(`shop.example.com`) && PathPrefix(`/static`)
      services:
        - name: whoami
          port: 80
"""


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pyroute", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_demo_manifests_are_clean():
    out = run("check", DEMO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ""
    assert "0 error(s), 0 warning(s) in 3 file(s); 6 router(s), 0 disabled" in out.stderr


def test_check_prints_file_line_object_field_message_and_fails(tmp_path):
    path = write(tmp_path, "shop.yaml", BROKEN, service("whoami", ns="web"))
    out = run("check", str(tmp_path))
    assert out.returncode == 1
    assert out.stdout.splitlines() == [
        "%s:9: IngressRoute web/shop: spec.routes[0].services[0].name: kubernetes service not "
        "found: web/cart" % path]
    assert "1 error(s), 0 warning(s) in 1 file(s); 2 router(s), 1 disabled" in out.stderr


def test_warnings_alone_do_not_fail(tmp_path):
    write(tmp_path, "a.yaml", BROKEN.replace("name: cart\n          port: 8080",
                                             "name: whoami\n          port: 80\n"
                                             "          strategy: RoundRobin"),
          service("whoami", ns="web"))
    out = run("check", str(tmp_path))
    assert out.returncode == 0
    assert "spec.routes[0].services[0].strategy: warning: RoundRobin strategy value is " \
           "deprecated" in out.stdout
    out = run("check", "--no-warnings", str(tmp_path))
    assert out.stdout == ""


def test_dump_is_traefik_shaped_json_with_disabled_routers_and_errors(tmp_path):
    write(tmp_path, "shop.yaml", BROKEN, service("whoami", ns="web"))
    out = run("check", "--dump", str(tmp_path))
    assert out.returncode == 1
    dump = json.loads(out.stdout)
    assert set(dump) == {"http", "tls"}
    assert set(dump["http"]) == {"routers", "services", "middlewares", "serversTransports"}
    assert set(dump["tls"]) == {"options", "stores", "certificates"}
    routers = dump["http"]["routers"]
    broken = [r for r in routers.values() if r["status"] == "disabled"]
    assert len(broken) == 1 and broken[0]["error"] == ["kubernetes service not found: web/cart"]
    ok = [n for n, r in routers.items() if r["status"] == "enabled"]
    assert len(ok) == 1 and ok[0].startswith("web-shop-") and ok[0].endswith("@kubernetescrd")
    assert "kubernetes service not found" in out.stderr   # problems go to stderr with --dump


def test_static_config_errors_and_paths_from_the_static_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("entryPoints:\n  web: {adress: ':80'}\n")
    out = run("check", "-c", str(bad), DEMO)
    assert out.returncode == 1
    assert "%s:2: entryPoints.web.adress: unknown key 'adress'" % bad in out.stderr
    assert "did you mean 'address'?" in out.stderr
    good = tmp_path / "static.yaml"
    good.write_text("entryPoints:\n  web: {address: '127.0.0.1:8000'}\n"
                    "providers:\n  kubernetesCRD:\n    paths: [%s]\n" % DEMO)
    out = run("check", "-c", str(good))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 router(s)" in out.stderr


def test_help_lists_check_and_explain():
    out = run("--help")
    assert "check" in out.stdout and "explain" in out.stdout


def test_static_file_inside_the_manifest_folder_is_not_a_manifest(tmp_path):
    write(tmp_path, "app.yaml", BROKEN.replace("name: cart\n          port: 8080",
                                               "name: whoami\n          port: 80"),
          service("whoami", ns="web"))
    (tmp_path / "static.yaml").write_text("entryPoints:\n  web: {address: ':8000'}\n")
    out = run("check", "-c", str(tmp_path / "static.yaml"), str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "in 1 file(s)" in out.stderr
