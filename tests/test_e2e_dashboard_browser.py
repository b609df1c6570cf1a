"""The dashboard in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven with Selenium) loads the dashboard of a running ``pyroute run``,
checks what it shows against the API, uses the explain box, follows a reload, and saves
screenshots (desktop and phone width) in the test's tmp dir.

Without Chromium the tests are skipped with the exact packages to install; set
PYROUTE_REQUIRE_BROWSER=1 (CI) to make that a failure instead.
"""
import os
import shutil
import time

import pytest

from e2e_support import ingressroute
from test_e2e_api import MANIFESTS, get_json, start

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
MISSING = []
if not CHROMIUM:
    MISSING.append("chromium")
if not DRIVER:
    MISSING.append("chromium-driver")
try:
    import selenium  # noqa: F401
except ImportError:
    MISSING.append("selenium (pip: the [test] extra)")


@pytest.fixture
def browser():
    if MISSING:
        msg = ("headless Chromium is missing: %s; install with `apt-get install -y chromium "
               "chromium-driver` and `pip install -e .[test]`" % ", ".join(MISSING))
        if os.environ.get("PYROUTE_REQUIRE_BROWSER"):
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1400", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, fn, timeout=20.0, what="condition"):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            got = fn(driver)
            if got:
                return got
        except Exception as e:  # element not there yet
            last = e
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s (%r); console: %s" % (
        what, last, driver.get_log("browser") if hasattr(driver, "get_log") else ""))


def rows(driver, table):
    from selenium.webdriver.common.by import By
    out = {}
    for tr in driver.find_elements(By.CSS_SELECTOR, "#%s tbody tr" % table):
        out[tr.get_attribute("data-name")] = tr
    return out


def test_dashboard_shows_the_api_and_explains(tmp_path, browser):
    from selenium.webdriver.common.by import By
    proxy = start(tmp_path, MANIFESTS)
    try:
        base = "http://127.0.0.1:%d" % proxy.api_port
        browser.get(base + "/")                         # Traefik's redirect to /dashboard/
        wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute(
            "data-loaded"), what="first load")
        assert browser.current_url == base + "/dashboard/"
        assert browser.title == "pyroute dashboard"

        # routers: every router of the API, with its status, rule and error
        api_routers = {r["name"]: r for r in get_json(proxy, "/api/http/routers")}
        shown = rows(browser, "routers-list-table")
        assert set(shown) == set(api_routers)
        for name, r in api_routers.items():
            cells = shown[name].find_elements(By.TAG_NAME, "td")
            assert cells[0].text == r["status"]
            assert cells[2].text == r["rule"]
            assert cells[3].text == r["priorityStr"]
            assert cells[7].text == r.get("service", "")
            for err in r.get("error", ()):
                assert err in cells[1].text
            for mw in r.get("middlewares", ()):
                assert mw in cells[6].text
        # no metrics in this configuration: the Traffic column says so on every row
        assert "metrics.prometheus" in get_json(proxy, "/api/pyroute/rates")["reason"]
        wait(browser, lambda d: all(
            tr.find_elements(By.TAG_NAME, "td")[8].text == "metrics off"
            for tr in rows(d, "routers-list-table").values()), what="metrics off")
        assert "metrics off" in browser.find_element(By.ID, "rates-note").text
        # services with their servers' health; middlewares and who uses them
        api_services = {s["name"]: s for s in get_json(proxy, "/api/http/services")}
        shown = rows(browser, "services-list-table")
        assert set(shown) == set(api_services)
        for name, s in api_services.items():
            text = shown[name].find_elements(By.TAG_NAME, "td")[3].text
            for url, status in (s.get("serverStatus") or {}).items():
                assert "%s %s" % (status, url) in text
        api_mws = {m["name"]: m for m in get_json(proxy, "/api/http/middlewares")}
        shown = rows(browser, "middlewares-list-table")
        assert set(shown) == set(api_mws)
        for name, m in api_mws.items():
            used = shown[name].find_elements(By.TAG_NAME, "td")[3].text
            assert all(u in used for u in m.get("usedBy", ())) and (m.get("usedBy") or
                                                                    used == "unused")
        # entry points, overview, the last reload's problems
        assert set(rows(browser, "entrypoints-list-table")) == {"traefik", "web"}
        ov = get_json(proxy, "/api/overview")
        card = browser.find_element(By.ID, "card-routers").text
        assert str(ov["http"]["routers"]["total"]) in card and "1 error" in card
        problems = browser.find_element(By.ID, "problems-table").text
        for p in get_json(proxy, "/api/pyroute/reload")["problems"]:
            assert p["message"] in problems
        browser.save_screenshot(str(tmp_path / "dashboard.png"))

        # the explain box: the same answer as the API's explain
        url = "http://a.example/api/x"
        want = get_json(proxy, "/api/pyroute/explain?url=" + url)
        box = browser.find_element(By.ID, "ex-url")
        box.clear()
        box.send_keys(url)
        browser.find_element(By.ID, "ex-go").click()
        out = wait(browser, lambda d: d.find_element(By.ID, "explain-out"), what="explain")
        assert browser.find_elements(By.ID, "ex-router"), out.text
        assert browser.find_element(By.ID, "ex-router").text == want["router"]
        chain = [li.text.split()[0] for li in
                 browser.find_elements(By.CSS_SELECTOR, "#ex-chain li")]
        assert chain == [m["name"] for m in want["middlewares"]]
        service = browser.find_element(By.ID, "ex-service").text
        assert want["service"]["name"] in service and "http://127.0.0.1:18999" in service
        # a request no router takes, and one where two routers match
        box.clear()
        box.send_keys("http://nowhere.example/")
        browser.find_element(By.ID, "ex-go").click()
        wait(browser, lambda d: "404" in d.find_element(By.ID, "ex-status").text,
             what="explain 404")
        browser.execute_script("document.getElementById('explain').scrollIntoView()")
        browser.save_screenshot(str(tmp_path / "dashboard-explain.png"))

        # a reload: the page follows it without being reloaded
        proxy.write_manifests(MANIFESTS + ingressroute("more", [("Host(`d.example`)",
                                                                 "whoami", "")]))
        wait(browser, lambda d: any("d.example" in (tr.text or "") for tr in
                                    rows(d, "routers-list-table").values()),
             timeout=30, what="the reloaded router")
        assert "configuration #2" in browser.find_element(By.ID, "reload").text

        # readable on a phone: no horizontal scrolling, tables as cards
        browser.set_window_size(390, 844)
        time.sleep(0.3)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390 + 1, width
        head = browser.find_element(By.CSS_SELECTOR, "#routers-list-table thead")
        assert not head.is_displayed()
        browser.save_screenshot(str(tmp_path / "dashboard-phone.png"))
        for name in ("dashboard.png", "dashboard-explain.png", "dashboard-phone.png"):
            assert (tmp_path / name).stat().st_size > 10000
        print("screenshots in", tmp_path)
    finally:
        proxy.stop()


def test_dashboard_shows_request_and_error_rates(tmp_path, browser):
    """With metrics on: after a known mix of 200/404/500 the router and service rows show
    the rates the API computes, and follow new traffic without a page reload."""
    from selenium.webdriver.common.by import By
    from e2e_backend import Backend
    from test_e2e_api_rates import METRICS, load, manifests, router_names, send, wait_rates
    be = Backend("be")
    proxy = start(tmp_path, manifests(be.port), extra=METRICS, workers=2)
    try:
        names = router_names(proxy)
        browser.get("http://127.0.0.1:%d/dashboard/" % proxy.api_port)
        wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute(
            "data-loaded"), what="first load")
        load(proxy.port)
        wait_rates(proxy, names["c"], 3)

        def cell(d, table, name):
            return rows(d, table)[name].find_element(By.CSS_SELECTOR, "div.rates")

        def shows(table, name, requests, share4xx, share5xx):
            def ok(d):
                c = cell(d, table, name)
                if c.get_attribute("data-requests") != str(requests):
                    return False
                minute = c.find_element(By.CSS_SELECTOR, ".rate-1m").text
                return ("4xx %.1f%%" % (100 * share4xx) in minute and
                        "5xx %.1f%%" % (100 * share5xx) in minute and
                        "%d req in" % requests in minute) and minute
            return wait(browser, ok, what="%s %s shows %d requests" % (table, name, requests))

        shows("routers-list-table", names["a"], 20, 0.3, 0.2)
        shows("routers-list-table", names["b"], 5, 0.0, 0.0)
        shows("routers-list-table", names["c"], 3, 1.0, 0.0)
        shows("services-list-table", names["a service"] + "@kubernetescrd", 20, 0.3, 0.2)
        shows("services-list-table", names["b service"] + "@kubernetescrd", 8, 0.375, 0.0)
        # req/s: the window's requests over its seconds (the API's numbers, a poll ago)
        minute = cell(browser, "routers-list-table", names["a"]).find_element(
            By.CSS_SELECTOR, ".rate-1m").text
        words = minute.split()                 # 1m R req/s 4xx P 5xx P N req in Ss
        assert words[0] == "1m" and words[2] == "req/s" and words[-1].endswith("s"), minute
        seconds = int(words[-1][:-1])
        assert 20 / (seconds + 0.6) - 0.01 <= float(words[1]) <= 20 / max(seconds - 0.6, 0.1) \
            + 0.01, minute
        assert "4xx and 5xx" in browser.find_element(By.ID, "rates-note").text
        browser.execute_script("document.getElementById('routers').scrollIntoView()")
        browser.save_screenshot(str(tmp_path / "dashboard-rates.png"))
        # live: more traffic shows up without reloading the page
        assert list(send(proxy.port, "a.test", "/status/500", 5)) == [500] * 5
        shows("routers-list-table", names["a"], 25, 0.24, 0.36)
        # on a phone the Traffic cell fits its card (no horizontal scrolling)
        browser.set_window_size(390, 844)
        time.sleep(0.3)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390 + 1, width
        browser.execute_script("document.querySelector('#routers-list div.rates')"
                               ".scrollIntoView()")
        browser.save_screenshot(str(tmp_path / "dashboard-rates-phone.png"))
        assert (tmp_path / "dashboard-rates.png").stat().st_size > 10000
        print("screenshots in", tmp_path)
    finally:
        proxy.stop()
        be.close()
