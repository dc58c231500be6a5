"""The dashboard as a person uses it: Debian's Chromium (headless, driven by Playwright) opens
``/dashboard#key=...`` or signs in through the form, invokes run meanwhile, and the numbers on
the page change without a reload. The key never appears in a URL the browser requests. A
screenshot is kept in tests/artifacts/."""

from __future__ import annotations

import secrets
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from bus.models import NamespaceAuth
from bus.store import Store
from tests.cluster_fixtures import Cluster

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent.parent / "artifacts"
ACTIONS = "/api/v1/namespaces/_/actions"
GREET = "def main(args):\n    print('greeting', args.get('i'))\n    return {'i': args.get('i')}\n"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # A persistent-free launch with a fresh profile; never a downloaded browser build.
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        await launched.close()


@pytest.fixture
async def tenant(docker_cluster: Cluster, store: Store) -> AsyncIterator[tuple[str, str]]:
    """(``uuid:key``, namespace) of a namespace of its own, with an action to invoke."""
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32),
                         namespace=f"dash-{uuid.uuid4().hex[:8]}")
    await store.put_auth(auth)
    headers = {"Authorization": aiohttp.encode_basic_auth(auth.uuid, auth.key)}
    async with aiohttp.ClientSession(base_url=docker_cluster.api_host, headers=headers) as http, \
            http.put(f"{ACTIONS}/greet", json={"exec": {"kind": "python:3.11",
                                                         "code": GREET}}) as resp:
        assert resp.status == 200, await resp.text()
    yield f"{auth.uuid}:{auth.key}", auth.namespace


async def _invoke(api_host: str, key: str, count: int) -> None:
    user, secret = key.split(":", 1)
    headers = {"Authorization": aiohttp.encode_basic_auth(user, secret)}
    async with aiohttp.ClientSession(base_url=api_host, headers=headers) as http:
        for i in range(count):
            async with http.post(f"{ACTIONS}/greet?blocking=true", json={"i": i}) as resp:
                assert resp.status == 200, await resp.text()


@asynccontextmanager
async def opened(browser: Browser, url: str) -> AsyncIterator[tuple[Page, list[str]]]:
    """A new tab at ``url``, and every URL it requests."""
    page = await browser.new_page(viewport={"width": 1280, "height": 1400})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    try:
        await page.goto(url)
        yield page, requested
    finally:
        await page.close()


async def test_dashboard_follows_invokes_live(
    browser: Browser, docker_cluster: Cluster, tenant: tuple[str, str]
) -> None:
    key, namespace = tenant
    async with opened(browser, f"{docker_cluster.api_host}/dashboard#key={key}") as (
            page, requested):
        await expect(page.locator("#connection")).to_have_text("live", timeout=15_000)
        await expect(page.locator("#namespace")).to_have_text(f"namespace {namespace}")
        await expect(page.locator("#total-activations")).to_have_text("0")
        # The fragment is gone from the address bar once read.
        assert "key=" not in page.url

        await _invoke(docker_cluster.api_host, key, 5)
        # No reload: the stream brings the new numbers.
        await expect(page.locator("#total-activations")).to_have_text("5", timeout=15_000)
        await expect(page.locator("#total-cold")).to_have_text("1")
        await expect(page.locator("#total-errors")).to_have_text("0")
        rows = page.locator("#latest tbody tr")
        await expect(rows).to_have_count(5)
        await expect(rows.first).to_contain_text("greet")
        # (Other tests may have run invokers of their own on this cluster's broker.)
        for invoker_id in docker_cluster.invoker_ids:
            row = page.locator("#invokers tbody tr", has_text=invoker_id)
            await expect(row).to_contain_text("up", timeout=5_000)
        # A row's logs are one click away.
        await rows.first.click()
        await expect(page.locator("#logs")).to_contain_text("greeting 4")

        await _invoke(docker_cluster.api_host, key, 2)
        await expect(page.locator("#total-activations")).to_have_text("7", timeout=15_000)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    secret = key.split(":", 1)[1]
    assert requested, "the page requested nothing"
    assert not [url for url in requested if secret in url or "key=" in url.split("#")[0]]


async def test_sign_in_through_the_form(
    browser: Browser, docker_cluster: Cluster, tenant: tuple[str, str]
) -> None:
    key, namespace = tenant
    async with opened(browser, f"{docker_cluster.api_host}/dashboard") as (page, _):
        await expect(page.locator("#login")).to_be_visible()
        await page.fill("#key", "nobody:wrong")
        await page.click("#login button")
        await expect(page.locator("#login-error")).to_contain_text(
            "supplied authentication is invalid", timeout=10_000)
        await page.fill("#key", key)
        await page.click("#login button")
        await expect(page.locator("#connection")).to_have_text("live", timeout=15_000)
        await expect(page.locator("#namespace")).to_have_text(f"namespace {namespace}")
        # Signing out brings the form back.
        await page.click("#logout")
        await expect(page.locator("#login")).to_be_visible()
