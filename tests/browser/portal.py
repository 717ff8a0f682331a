"""The portal in a real browser: Debian's headless chromium driven by
Playwright for Python (tests/tests/portal_browser.rs runs this).

Usage: portal.py CONFIG.json

The Rust test builds the world (SOC, portal, agents, users) and hands over
its facts in CONFIG.json. This script talks to the test over stdin/stdout,
one JSON object per line:

  -> {"ask": "stop-target"}        the overview is open and the check is up:
  <- {}                            the test has stopped the check's target
  -> {"ask": "download-range"}
  <- {"from": "...", "to": "..."}  datetime-local values (the user's zone)
  -> {"result": {...}}             last line: what was seen (or "error")

Logs go to stderr. Full-page screenshots go to the artifacts directory.
"""

import base64
import hashlib
import hmac
import json
import struct
import subprocess
import sys
import tarfile
import time
import traceback
import urllib.parse
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Generous for a slow 2-core machine; the live delay is measured, not padded.
TIMEOUT_MS = 60_000

CFG = json.loads(Path(sys.argv[1]).read_text())
ARTIFACTS = Path(CFG["artifacts"])
BASE = CFG["base_url"].rstrip("/")
RESULT = {"screenshots": []}


def log(*parts):
    print("portal.py:", *parts, file=sys.stderr, flush=True)


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def ask(what):
    send({"ask": what})
    line = sys.stdin.readline()
    if not line:
        raise RuntimeError(f"the test closed stdin while answering {what!r}")
    return json.loads(line)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# ------------------------------------------------------------------- TOTP


def totp(otpauth_uri, at=None):
    """RFC 6238 code of an otpauth:// URI (HMAC-SHA1/256/512, 30 s, 6 digits by default)."""
    uri = urllib.parse.urlparse(otpauth_uri)
    query = urllib.parse.parse_qs(uri.query)
    secret = query["secret"][0].upper()
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digits = int(query.get("digits", ["6"])[0])
    period = int(query.get("period", ["30"])[0])
    algorithm = query.get("algorithm", ["SHA1"])[0].lower()
    counter = int((time.time() if at is None else at) // period)
    mac = hmac.new(key, struct.pack(">Q", counter), getattr(hashlib, algorithm)).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**digits
    return str(code).zfill(digits)


def totp_fresh(otpauth_uri):
    """A code with at least 5 s of its period left (no expiry mid-submit)."""
    period = int(urllib.parse.parse_qs(urllib.parse.urlparse(otpauth_uri).query).get("period", ["30"])[0])
    left = period - time.time() % period
    if left < 5:
        time.sleep(left + 0.2)
    return totp(otpauth_uri)


# ------------------------------------------------------------- the browser


def shot(page, name):
    path = ARTIFACTS / f"{len(RESULT['screenshots']) + 1:02d}-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    RESULT["screenshots"].append(path.name)
    log("screenshot", path)


def goto(page, path, status=200):
    resp = page.goto(BASE + path)
    check(resp is not None, f"no response for {path}")
    check(resp.status == status, f"GET {path}: status {resp.status}, expected {status}")
    return resp


def spki_pin(cert_pem):
    """Base64 SHA-256 of the certificate's public key: Chromium trusts the
    portal's certificate (issued by the SOC's own CA) and nothing else."""
    der = subprocess.run(
        ["openssl", "x509", "-in", cert_pem, "-noout", "-pubkey"], check=True, capture_output=True
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"], input=der, check=True, capture_output=True
    ).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def login(page, user, label):
    """Name and password, the TOTP step when asked, the forced password change."""
    goto(page, "/login")
    shot(page, f"{label}-login")
    page.fill("input[name=name]", user["name"])
    page.fill("input[name=password]", user["password"])
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    if page.url.endswith("/login/totp"):
        shot(page, f"{label}-totp")
        page.fill("input[name=code]", totp_fresh(user["otpauth"]))
        with page.expect_navigation():
            page.click("form[action='/login/totp'] button[type=submit]")
        RESULT[f"{label}_totp"] = True
    else:
        check(not user.get("totp_required"), f"{label}: no TOTP step after the password, url {page.url}")
        RESULT[f"{label}_totp"] = False
    check("/login" not in page.url, f"{label}: login failed, still at {page.url}: {page.inner_text('main')}")
    if page.url.endswith("/account"):
        # First login: the one-time password must be replaced.
        check(page.locator("p.warn").count() == 1, f"{label}: /account without the must-change note")
        shot(page, f"{label}-password-change")
        page.fill("input[name=current]", user["password"])
        page.fill("input[name=new]", user["new_password"])
        page.fill("input[name=repeat]", user["new_password"])
        with page.expect_navigation():
            page.click("form[action='/account/password'] button[type=submit]")
        check(not page.url.endswith("/account"), f"{label}: password change refused: {page.inner_text('main')}")
        RESULT[f"{label}_password_changed"] = True
    else:
        RESULT[f"{label}_password_changed"] = False
    log(label, "logged in, at", page.url)


# ------------------------------------------------------------------ steps


def live_check_down(page):
    tenant, check_id = CFG["tenant_a"], CFG["check_id"]
    goto(page, f"/t/{tenant}")
    row = f"#board tr:has(td:text-is('{CFG['agent_a']}')):has-text('{check_id}')"
    page.wait_for_selector(f"{row}.state-up", timeout=TIMEOUT_MS)
    page.wait_for_selector("#live.on", timeout=TIMEOUT_MS)  # the event stream is open
    shot(page, "overview-up")
    # Marks this document (a reload would lose the mark) and notes, in the
    # page, the moment the row turns down (Date.now(): the same clock the
    # SOC stamps received_us with).
    page.evaluate(
        """([agent, id]) => {
            window.__owletSameDocument = true;
            window.__owletDownAt = null;
            const seen = () => Array.from(document.querySelectorAll('#board tr.state-down')).some(
                tr => tr.cells.length > 1 && tr.cells[0].textContent.trim() === agent
                      && tr.cells[1].textContent.includes(id));
            new MutationObserver(() => {
                if (window.__owletDownAt === null && seen()) { window.__owletDownAt = Date.now(); }
            }).observe(document.body, { childList: true, subtree: true });
        }""",
        [CFG["agent_a"], check_id],
    )
    ask("stop-target")
    try:
        page.wait_for_function("() => window.__owletDownAt !== null", timeout=TIMEOUT_MS, polling=50)
    except PlaywrightTimeout:
        raise AssertionError(
            f"the open overview never showed {check_id} down within {TIMEOUT_MS / 1000:.0f} s of its "
            "target being stopped (no live update; a reload might show it)"
        ) from None
    RESULT["down_seen_ms"] = page.evaluate("() => window.__owletDownAt")
    check(page.evaluate("() => window.__owletSameDocument === true"), "the overview was reloaded")
    check(page.locator(f"{row}.state-down").count() == 1, "the down row is gone again")
    shot(page, "overview-down-live")


def diff(page):
    tenant = CFG["tenant_a"]
    goto(page, f"/t/{tenant}/changes")
    shot(page, "changes")
    link = page.locator(f"table.changes tr:has(td.path:text-is('{CFG['change_path']}')) a").first
    with page.expect_navigation():
        link.click()
    check(f"/t/{tenant}/changes/" in page.url, f"the change link led to {page.url}")
    lines = page.locator("pre.diff span").all_inner_texts()
    RESULT["diff_lines"] = lines
    for want in CFG["diff_lines"]:
        check(want in lines, f"diff line {want!r} not shown as text; shown: {lines}")
    # Markup in a diff line is text: no element made of it.
    markup = page.locator("pre.diff").evaluate("pre => pre.querySelectorAll(':not(span)').length")
    check(markup == 0, f"{markup} elements inside the diff: a line's markup became HTML")
    check(page.locator("dd.hash").count() == 2, "the change page shows no hashes")
    shot(page, "change-diff")


def download(page):
    tenant = CFG["tenant_a"]
    goto(page, f"/t/{tenant}/download")
    shot(page, "download")
    rng = ask("download-range")
    page.select_option("select[name=format]", "ndjson")
    page.fill("input[name=from]", rng["from"])
    page.fill("input[name=to]", rng["to"])
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.click(f"form[action='/t/{tenant}/export'] button[type=submit]")
    dl = info.value
    check(dl.failure() is None, f"download failed: {dl.failure()}")
    path = ARTIFACTS / "download.ndjson"
    dl.save_as(str(path))
    RESULT["download"] = {"path": str(path), "from": rng["from"], "to": rng["to"], "name": dl.suggested_filename}


def reports(page):
    """The reports page: render this month's report now (the form), and
    check it names the check the agent runs; then open a kept report if
    the page lists one."""
    tenant = CFG["tenant_a"]
    goto(page, f"/t/{tenant}/plots")
    shot(page, "plots")
    goto(page, f"/t/{tenant}/reports")
    shot(page, "reports")
    month = time.strftime("%Y-%m", time.gmtime())
    page.fill("main input[name=period]", month)
    with page.expect_navigation():
        page.click(f"form[action='/t/{tenant}/reports/now'] button[type=submit]")
    text = page.locator("body").inner_text()
    check(CFG["check_id"] in text,
          f"the report rendered for {month} does not name check {CFG['check_id']}: {text[:400]!r}")
    shot(page, "report-now")
    RESULT["reports"] = f"rendered {month} now ({page.url})"
    goto(page, f"/t/{tenant}/reports")
    links = page.locator(f"main a[href^='/t/{tenant}/reports/files/']")
    if links.count() > 0:
        with page.expect_navigation():
            links.first.click()
        shot(page, "report-kept")
        RESULT["reports"] += f"; opened kept {page.url}"


def other_pages(page):
    tenant = CFG["tenant_a"]
    goto(page, f"/t/{tenant}/alerts")
    shot(page, "alerts")
    goto(page, "/account")
    shot(page, "account")


def tenant_users_and_contacts(page):
    """The tenant's users (its viewer is listed) and contacts: one added
    through the form is listed after the page comes back."""
    tenant = CFG["tenant_a"]
    goto(page, f"/t/{tenant}/users")
    check(CFG["viewer"]["name"] in page.inner_text("main"),
          f"/t/{tenant}/users does not list the tenant's viewer {CFG['viewer']['name']!r}")
    shot(page, "tenant-users")
    goto(page, f"/t/{tenant}/contacts")
    shot(page, "contacts")
    contact = CFG["contact"]
    page.fill("#add-contact input[name=name]", contact["name"])
    page.fill("#add-contact input[name=email]", contact["email"])
    with page.expect_navigation():
        page.click("#add-contact button[type=submit]")
    check(page.url.endswith(f"/t/{tenant}/contacts"), f"adding a contact led to {page.url}")
    listed = page.locator(f"table input[name=email][value='{contact['email']}']")
    check(listed.count() == 1, f"the added contact {contact['email']} is not listed: {page.inner_text('main')}")
    shot(page, "contacts-added")


def sensors(page):
    """Issues a sensor's certificate through the form and downloads its
    bundle once; the test reads the bundle's file names and owlet.toml."""
    tenant, agent = CFG["tenant_a"], CFG["new_sensor"]
    goto(page, "/admin/sensors")
    shot(page, "sensors")
    form = "form[action='/admin/sensors/issue']"
    page.fill(f"{form} input[name=tenant]", tenant)
    page.fill(f"{form} input[name=agent]", agent)
    with page.expect_navigation():
        page.click(f"{form} button[type=submit]")
    check(page.locator("div.issued").count() == 1, f"no bundle after issuing: {page.inner_text('main')}")
    shot(page, "sensor-issued")
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.click("form[action='/admin/sensors/bundle'] button[type=submit]")
    dl = info.value
    check(dl.failure() is None, f"bundle download failed: {dl.failure()}")
    path = ARTIFACTS / dl.suggested_filename
    dl.save_as(str(path))
    with tarfile.open(path) as tar:
        names = sorted(tar.getnames())
        config = tar.extractfile(f"{tenant}-{agent}/owlet.toml")
        check(config is not None, f"no owlet.toml in the bundle: {names}")
        RESULT["bundle"] = {"path": str(path), "names": names, "owlet_toml": config.read().decode()}


def viewer_cannot_reach_b(page):
    a, b = CFG["tenant_a"], CFG["tenant_b"]
    goto(page, "/")
    check(page.url.rstrip("/").endswith(f"/t/{a}"), f"the viewer's home is {page.url}, not /t/{a}")
    shot(page, "viewer-overview")
    secrets = CFG["b_markers"] + [f"/t/{b}"]
    leaks = []
    for text in [page.content()]:
        leaks += [s for s in secrets if s in text]
    pages = [f"/t/{b}", f"/t/{b}/board", f"/t/{b}/attention", f"/t/{b}/plots", f"/t/{b}/reports",
             f"/t/{b}/changes", f"/t/{b}/changes/1", f"/t/{b}/alerts", f"/t/{b}/alerts/1",
             f"/t/{b}/download", f"/t/{b}/audit"]
    seen = {}
    for path in pages:
        resp = page.goto(BASE + path)
        seen[path] = resp.status
        leaks += [f"{path}: {s}" for s in secrets if s in page.content()]
        if path == f"/t/{b}":
            shot(page, "viewer-foreign-tenant-404")
    # The stream and the file, fetched by the page (same session, same
    # certificate pin); a body is read for at most 3 s (a leaking stream
    # would never end).
    for path in [f"/t/{b}/live", f"/t/{b}/export?format=ndjson"]:
        status, body = page.evaluate(
            """async (url) => {
                const stop = new AbortController();
                const timer = setTimeout(() => stop.abort(), 3000);
                const resp = await fetch(url, { signal: stop.signal, redirect: 'manual' });
                let body = '';
                try { body = await resp.text(); } catch (e) { body = '(cut after 3 s) ' + e; }
                clearTimeout(timer);
                return [resp.status, body];
            }""",
            BASE + path,
        )
        seen[path] = status
        leaks += [f"{path}: {s}" for s in secrets if s in body]
    RESULT["foreign_status"] = seen
    check(all(s == 404 for s in seen.values()), f"tenant {b} as {a}'s viewer: {seen}")
    check(not leaks, f"tenant {b}'s data shown to {a}'s viewer: {leaks}")


def fresh_page(browser, downloads):
    """A page in a new context (no cookies: a user of its own)."""
    ctx = browser.new_context(accept_downloads=downloads, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    return ctx.new_page()


def main():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pin = spki_pin(CFG["cert_pem"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[f"--ignore-certificate-errors-spki-list={pin}"],
        )
        RESULT["browser"] = browser.version
        page = None
        try:
            page = fresh_page(browser, downloads=True)
            login(page, CFG["analyst"], "analyst")
            live_check_down(page)
            diff(page)
            download(page)
            reports(page)
            other_pages(page)
            page.context.close()

            page = fresh_page(browser, downloads=True)
            login(page, CFG["admin"], "admin")
            tenant_users_and_contacts(page)
            sensors(page)
            page.context.close()

            page = fresh_page(browser, downloads=False)
            login(page, CFG["viewer"], "viewer")
            viewer_cannot_reach_b(page)
        except Exception:
            RESULT["error"] = traceback.format_exc()
            log(RESULT["error"])
            if page is not None and not page.is_closed():
                try:
                    shot(page, "failure")
                    RESULT["failure_url"] = page.url
                except Exception as e:  # the screenshot is a bonus
                    log("no failure screenshot:", e)
        browser.close()
    send({"result": RESULT})
    return 1 if "error" in RESULT else 0


if __name__ == "__main__":
    sys.exit(main())
