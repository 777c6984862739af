"""The dashboard in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``; nothing
is downloaded) against a real ``webhook-mcp serve``: sign in, walk every page, run every action
and check each result in the database. Screenshots of every page go to
``$WEBHOOK_MCP_SCREENSHOT_DIR`` (default: the test's temporary directory)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from sqlalchemy import func, select

from conftest import Receiver, make_settings, wait_until
from dashboard_seed import seed_week
from webhook_mcp import Hub
from webhook_mcp.service.tenants import TenantOperations
from webhook_mcp.storage.schema import deliveries, delivery_attempts, webhooks

pytestmark = pytest.mark.anyio

TOKEN = "dashboard-test-token"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
T = TypeVar("T")


def _chromium() -> Any:
    """Headless Chromium from the system packages, in a fresh profile, with everything that
    would reach the network at start-up turned off."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are not installed; .ci/run installs them with apt-get")
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="webhook-mcp-chromium-")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1360,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.profile_dir = profile
    return driver


@pytest.fixture
def browser_driver() -> Iterator[Any]:
    driver = _chromium()
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(driver.profile_dir, ignore_errors=True)


class Browser:
    """Blocking Selenium steps (run in a worker thread: the receiver shares the test's loop)."""

    def __init__(self, driver: Any, base: str, shots: Path) -> None:
        self.driver = driver
        self.base = base
        self.shots = shots

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str = "main") -> str:
        return str(self.find(css).text)

    def submit(self, button: Any) -> None:
        """Click something that loads a new page, and wait until it has."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.wait import WebDriverWait

        page = self.find("html")
        button.click()
        # While the old page is being torn down, chromedriver may answer a look at its element with
        # a generic error ("Node ... does not belong to the document") rather than "stale": look again.
        wait = WebDriverWait(self.driver, 15, ignored_exceptions=(WebDriverException,))
        wait.until(expected_conditions.staleness_of(page))

    def confirm(self, name: str, shot: str | None = None, /, **fields: str) -> None:
        """Open an action's confirmation, fill its fields, and confirm."""
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.wait import WebDriverWait

        self.find(f'button[popovertarget="confirm-{name}"]').click()
        dialog = self.find(f"#confirm-{name}")
        WebDriverWait(self.driver, 5).until(expected_conditions.visibility_of(dialog))
        for field, value in fields.items():
            element = dialog.find_element("name", field)
            if element.tag_name == "select":
                from selenium.webdriver.support.select import Select

                Select(element).select_by_value(value)
            else:
                element.clear()
                element.send_keys(value)
        if shot is not None:
            self.shot(shot, whole=False)
        self.submit(dialog.find_element("css selector", f'[data-confirm="confirm-{name}"]'))

    def shot(self, name: str, *, whole: bool = True) -> Path:
        """The whole page, however long, or what a 1360x1000 window shows."""
        height = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
        self.driver.set_window_size(1360, max(900, min(height + 140, 4000)) if whole else 1000)
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(1360, 900)
        return path


def _start_serve(port: int, environment: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "webhook_mcp.interfaces.cli", "serve", "--transport", "streamable-http"]
    return subprocess.Popen([*command, "--port", str(port)], env=environment, stderr=subprocess.PIPE)


@contextlib.asynccontextmanager
async def serving(database_url: str, **env: str) -> Any:
    """``webhook-mcp serve --transport streamable-http`` on a free port (no dispatcher: the test
    decides every delivery's fate); yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ,
        "WEBHOOK_MCP_DATABASE_URL": database_url,
        "WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
        "WEBHOOK_MCP_API_TOKEN": TOKEN,
        "WEBHOOK_MCP_RUN_DISPATCHER": "false",
        "WEBHOOK_MCP_LOG_LEVEL": "WARNING",
        **env,
    }
    process = _start_serve(port, environment)

    async def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            stream = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            return False
        await stream.aclose()
        return True

    try:
        await wait_until(listening, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


async def step(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def _shots(tmp_path: Path) -> Path:
    chosen = os.environ.get("WEBHOOK_MCP_SCREENSHOT_DIR")
    shots = Path(chosen) if chosen else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    return shots


async def _count(hub: Hub, query: Any) -> int:
    return int(await hub.store.scalar(query))


async def test_sign_in_walk_every_page_and_run_every_action(
    database_url: str, tmp_path: Path, receiver: Receiver, browser_driver: Any
) -> None:
    settings = make_settings(database_url)
    async with Hub.open(settings, dispatch=False) as hub:
        ids = await seed_week(hub, time.time())
        local = await hub.service.create_webhook(receiver.url, ["order.paid"], "This machine")
        async with serving(database_url) as base:
            browser = Browser(browser_driver, base, _shots(tmp_path))
            await _sign_in(browser)
            await _webhook_list(browser, ids)
            await _enable_and_disable(browser, hub, ids["shop"])
            await _send_test(browser, hub, receiver, local.id)
            dead = await _delivery_log(browser)
            await _retry_one(browser, hub, dead)
            await _replay_failed(browser, hub, ids["payments"])
            await _rotate_secret(browser, hub, local.id)
            await step(browser.submit, browser.find("header form button"))
            assert "Sign in" in await step(browser.text)
            await step(browser.open, "/ui/")
            assert "/ui/login" in browser_driver.current_url


async def _sign_in(browser: Browser) -> None:
    await step(browser.open, "/ui/")
    assert "/ui/login" in browser.driver.current_url
    await step(browser.shot, "login")
    await step(lambda: browser.find("#token").send_keys("not-the-token"))
    await step(browser.submit, browser.find("form.stack button"))
    assert "not this server's API token" in await step(browser.text)
    await step(lambda: browser.find("#token").send_keys(TOKEN))
    await step(browser.submit, browser.find("form.stack button"))
    assert browser.driver.current_url.endswith("/ui/")
    cookie = await step(browser.driver.get_cookie, "webhook_mcp_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"


async def _webhook_list(browser: Browser, ids: dict[str, int]) -> None:
    rows = {
        row.find_element("css selector", "td.url a").text: row.text
        for row in await step(browser.find_all, "table.hooks tbody tr")
    }
    assert len(rows) == 4
    crm = next(text for url, text in rows.items() if "crm.example.org" in url)
    assert "auto-disabled" in crm and "410 Gone" in crm
    payments = next(text for url, text in rows.items() if "payments.example.net" in url)
    assert "0.0%" in payments and "10.00 s" in payments  # every attempt of the last day timed out
    await step(browser.shot, "webhooks")


async def _enable_and_disable(browser: Browser, hub: Hub, shop: int) -> None:
    await step(browser.open, f"/ui/webhooks/{shop}")
    assert len(await step(browser.find_all, "figure.chart svg")) == 3
    await step(browser.shot, "webhook")
    await step(browser.shot, "dashboard", whole=False)  # the README's
    await step(browser.confirm, "disable")
    assert "is disabled" in await step(browser.text, ".notice")
    row = (await hub.store.fetch_all(select(webhooks).where(webhooks.c.id == shop)))[0]
    assert row.enabled is False and row.disabled_reason == "disabled from the dashboard"
    await step(browser.confirm, "enable")
    assert "is enabled" in await step(browser.text, ".notice")
    assert await hub.store.scalar(select(webhooks.c.enabled).where(webhooks.c.id == shop)) is True


async def _send_test(browser: Browser, hub: Hub, receiver: Receiver, local: int) -> None:
    await step(browser.open, f"/ui/webhooks/{local}")
    await step(browser.confirm, "test", event="order.paid")
    assert "Test order.paid delivered: 200" in await step(browser.text, ".notice")
    (received,) = receiver.requests
    shown = await step(browser.text, "pre.http")
    # The request rebuilt on the page is the one the receiver got, signature and body alike.
    assert f"webhook-signature: {received.headers['webhook-signature']}" in shown
    assert f"webhook-timestamp: {received.headers['webhook-timestamp']}" in shown
    assert await step(browser.text, "pre.body") == received.body.decode()
    a = delivery_attempts.c
    assert await _count(hub, select(func.count()).where(a.webhook_id == local, a.is_test.is_(True))) == 1
    await step(browser.shot, "attempt-test")


async def _delivery_log(browser: Browser) -> int:
    """Filter the log to the payments endpoint's timeouts, page through it; returns the newest
    one's attempt id."""
    await step(browser.open, "/ui/log")
    from selenium.webdriver.support.select import Select

    def filter_timeouts() -> None:
        Select(browser.find('select[name="outcome"]')).select_by_value("no_response")
        Select(browser.find('select[name="event"]')).select_by_value("payment.completed")
        browser.submit(browser.find(".filters button[type=submit]"))

    await step(filter_timeouts)
    rows = await step(browser.find_all, "table.log tbody tr")
    assert len(rows) == 50 and all("payment.completed" in r.text and "no response" in r.text for r in rows)
    first = rows[0].find_element("css selector", "a").get_attribute("href")
    await step(browser.shot, "log")
    await step(browser.submit, browser.find('a[rel="next"]'))
    older = await step(browser.find_all, "table.log tbody tr")
    assert 0 < len(older) <= 50 and all("no response" in r.text for r in older)
    await step(browser.submit, browser.find('a[rel="prev"]'))
    again = await step(browser.find_all, "table.log tbody tr")
    assert again[0].find_element("css selector", "a").get_attribute("href") == first
    return int(first.rsplit("/", 1)[1])


async def _retry_one(browser: Browser, hub: Hub, attempt_id: int) -> None:
    await step(browser.open, f"/ui/attempts/{attempt_id}")
    assert "No response" in await step(browser.text, ".notice.outcome")
    await step(browser.shot, "attempt")
    delivery_id = await hub.store.scalar(
        select(delivery_attempts.c.delivery_id).where(delivery_attempts.c.id == attempt_id)
    )
    await step(browser.confirm, "retry")
    assert f"Delivery {delivery_id} is queued" in await step(browser.text, ".notice")
    row = (await hub.store.fetch_all(select(deliveries).where(deliveries.c.id == delivery_id)))[0]
    assert row.state == "pending" and row.attempts == 0


async def _replay_failed(browser: Browser, hub: Hub, payments: int) -> None:
    d = deliveries.c
    dead = await _count(hub, select(func.count()).where(d.webhook_id == payments, d.state == "failed"))
    assert dead > 0
    await step(browser.open, f"/ui/webhooks/{payments}")
    await step(browser.confirm, "replay")
    assert f"Requeued {dead} dead deliveries" in await step(browser.text, ".notice")
    assert await _count(hub, select(func.count()).where(d.webhook_id == payments, d.state == "failed")) == 0


async def _rotate_secret(browser: Browser, hub: Hub, local: int) -> None:
    before = (await hub.service.get_secret(local)).secret
    await step(browser.open, f"/ui/webhooks/{local}")
    await step(browser.confirm, "rotate", "confirm", grace_hours="2")
    assert "New secret issued" in await step(browser.text, ".notice")
    after = await hub.service.get_secret(local)
    assert after.secret != before and after.previous_secret_expires_at is not None
    await step(browser.submit, browser.find('form[action$="/secret"] button'))
    assert await step(browser.text, "#secret") == after.secret
    await step(browser.shot, "secret")
    # The test sent before the rotation: its page now says the signature was made with another secret.
    await step(browser.open, "/ui/log?outcome=test")
    await step(browser.submit, browser.find("table.log tbody tr a"))
    assert "rotated after this attempt" in await step(browser.text, ".pair")


async def test_the_admin_manages_tenants_and_a_tenant_token_sees_its_own(
    database_url: str, tmp_path: Path, browser_driver: Any
) -> None:
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        ops = TenantOperations(hub.store)
        await hub.service.create_webhook("https://default.example/in", ["order.created"], "The default shop")
        async with serving(database_url) as base:
            browser = Browser(browser_driver, base, _shots(tmp_path))
            await _sign_in_with(browser, TOKEN)
            assert "admin · all tenants" in await step(browser.text, "header")
            await step(browser.submit, browser.find('header nav a[href="/ui/tenants"]'))
            await step(browser.shot, "tenants-empty")
            await _create_tenant(browser, ops)
            acme = await ops.require("acme")
            ours = await hub.service.for_tenant(acme.id).create_webhook("https://acme.example/in", ["order.paid"])
            token = await _issue_token(browser, ops)
            await _tenant_session(browser, token, ours.id)
            await _sign_in_with(browser, TOKEN)
            await _rename_and_delete(browser, ops)


async def _sign_in_with(browser: Browser, token: str) -> None:
    """A fresh session: no cookie left from the last one."""
    await step(browser.driver.delete_all_cookies)
    await step(browser.open, "/ui/login")
    await step(lambda: browser.find("#token").send_keys(token))
    await step(browser.submit, browser.find("form.stack button"))
    assert browser.driver.current_url.endswith("/ui/")


async def _create_tenant(browser: Browser, ops: TenantOperations) -> None:
    for name, message in (("Acme Shop", "is not valid"), ("default", "exists already"), ("acme", "created")):
        await step(lambda: browser.find("#tenant-name").send_keys(name))  # noqa: B023 (run at once)
        await step(browser.submit, browser.find("form.create-tenant button"))
        assert message in await step(browser.text, ".notice"), name
        if message != "created":
            await step(browser.shot, "tenants-bad-name")
    assert browser.driver.current_url.endswith("/ui/tenants/acme")
    assert [t.name for t in await ops.list_tenants()] == ["default", "acme"]


async def _issue_token(browser: Browser, ops: TenantOperations) -> str:
    """Issue a token on the tenant's page; returns it as the page shows it, once."""
    await step(browser.confirm, "issue", "tenant-issue", label="acme's shop backend")
    token = str(await step(browser.text, "#token"))
    assert token.startswith("wmt_") and "Shown this once" in await step(browser.text)
    await step(browser.shot, "token")
    assert await ops.resolve(token) == (await ops.require("acme")).id
    await step(browser.submit, browser.find("main a.btn"))
    (listed,) = await ops.list_tokens("acme")
    row = await step(browser.text, "table.tokens tbody")
    assert listed.hint in row and "acme's shop backend" in row and token not in await step(browser.text)
    await step(browser.shot, "tenant")
    return token


async def _tenant_session(browser: Browser, token: str, ours: int) -> None:
    """Signed in with the tenant's token: its own webhook only, and no tenant management."""
    await _sign_in_with(browser, token)
    assert "tenant acme" in await step(browser.text, "header")
    assert not await step(browser.find_all, 'header nav a[href="/ui/tenants"]')
    links = [a.get_attribute("href") for a in await step(browser.find_all, "table.hooks td.url a")]
    assert [link.rsplit("/", 1)[1] for link in links] == [str(ours)]
    await step(browser.shot, "tenant-session")
    await step(browser.open, "/ui/tenants")
    assert "Tenants are managed by the admin" in await step(browser.text)
    await step(browser.shot, "tenant-session-refused")


async def _rename_and_delete(browser: Browser, ops: TenantOperations) -> None:
    await step(browser.open, "/ui/?tenant=acme")
    assert "acme.example" in await step(browser.text) and "default.example" not in await step(browser.text)
    await step(browser.shot, "webhooks-of-tenant")
    await step(browser.open, "/ui/tenants/acme")
    await step(browser.confirm, "rename", "tenant-rename", name="acme-eu")
    assert "is now 'acme-eu'" in await step(browser.text, ".notice")
    assert browser.driver.current_url.endswith("/ui/tenants/acme-eu")
    await step(browser.confirm, "delete", "tenant-delete", confirm="acme-eu")
    assert "deleted" in await step(browser.text, ".notice")
    assert browser.driver.current_url.endswith("/ui/tenants")
    assert [t.name for t in await ops.list_tenants()] == ["default"]
    await step(browser.shot, "tenants")
    await step(browser.open, "/ui/tenants/default")
    assert "cannot be deleted" in await step(browser.text)
    await step(browser.shot, "tenant-default")
