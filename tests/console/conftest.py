"""A live server with the mechanic's project on a ScriptedLLM, and a real headless Chromium.

Chromium and ChromeDriver are Debian's packages, which ``.ci/browser`` (part of the
README's test command) installs when it can. Without them the browser tests skip saying
why, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from config import Settings
from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import ScriptedLLM
from tests.conftest import create_test_user
from tests.core.mechanic.conftest import ROOT, make_project, mechanic_settings
from tests.core.protocols.conftest import LiveServer

# Not AGENTRY_*: the session fixture clears those. Where screenshots are copied as well.
SCREENSHOTS_ENV = "CONSOLE_SCREENSHOTS_DIR"


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment repository with the shipped agents and tools (the mechanic's included)."""
    project = make_project(tmp_path_factory.mktemp("console"))
    shutil.rmtree(project / "agents")
    for name in ("agents", "tools"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    repo = git.Repo(project)
    repo.git.add(A=True)
    actor = git.Actor("Test", "test@example.com")
    repo.index.commit("agents and tools", author=actor, committer=actor)
    return project


@pytest.fixture(scope="module")
def settings(test_settings: Settings, project: Path, llm: ScriptedLLM) -> Settings:
    return mechanic_settings(
        test_settings, project, llm_base_url=llm.base_url, llm_model="scripted", llm_api_key="k"
    )


@pytest.fixture(scope="module")
def live(db: Database, settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(db=db, settings=settings)) as server:
        yield server


@pytest.fixture(scope="module")
def keys(db: Database) -> dict[str, str]:
    return {
        "admin": create_test_user(db, "console-admin@example.com", admin=True)[1],
        "alice": create_test_user(db, "console-alice@example.com")[1],
        "bob": create_test_user(db, "console-bob@example.com")[1],
    }


def _missing_browser(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests: see .ci/browser)")
    pytest.skip(f"{reason}: run .ci/browser as root, or apt-get install chromium chromium-driver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium through selenium and Debian's chromedriver."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        _missing_browser("chromium or chromedriver is not installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing_browser("selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Save a screenshot under the test's temp folder (and in $CONSOLE_SCREENSHOTS_DIR)."""
    folder = tmp_path_factory.mktemp("screenshots")
    extra = os.environ.get(SCREENSHOTS_ENV)

    def take(driver: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        # The whole page, not only the window: grow the window to the page for the shot.
        size = driver.get_window_size()
        height = driver.execute_script(
            "return document.documentElement.scrollHeight + window.outerHeight"
            " - window.innerHeight"
        )
        driver.set_window_size(size["width"], min(max(int(height), size["height"]), 2400))
        try:
            assert driver.save_screenshot(str(path)), f"no screenshot {path}"
        finally:
            driver.set_window_size(size["width"], size["height"])
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(extra) / path.name)
        return path

    return take
