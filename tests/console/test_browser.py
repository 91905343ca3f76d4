"""The console in a real headless Chromium against a live server on the ScriptedLLM: sign
in, chat a streamed turn, approve a mechanic plan and find its audit row; a non-admin sees
no admin page or action. Screenshots are kept under the test's temp folder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from tests.core.protocols.conftest import LiveServer

IDEA = {
    "action": "add_entity",
    "entity": "idea",
    "fields": [{"name": "title", "type": "string", "max_length": 200, "required": True}],
}
WAIT = 30  # seconds: generous, the machine is shared; nothing here is a timing assertion


def wait(driver: Any, condition: Callable[[Any], Any]) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # htmx may swap an element out between finding it and reading it: look again.
    ignored = (StaleElementReferenceException,)
    return WebDriverWait(driver, WAIT, ignored_exceptions=ignored).until(condition)


def by_id(driver: Any, name: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, name)


def present(driver: Any, css: str) -> bool:
    from selenium.webdriver.common.by import By

    return bool(driver.find_elements(By.CSS_SELECTOR, css))


def sign_in(driver: Any, live: LiveServer, key: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{live.url}/console/conversations")
    wait(driver, lambda d: "/console/login" in d.current_url)
    by_id(driver, "api_key").send_keys(key)
    by_id(driver, "sign-in").click()
    # Not the URL alone: the sign-in page's own (?next=/console/conversations) ends the same.
    wait(driver, lambda d: "/login" not in d.current_url and present(d, "#new-agent"))


def start_conversation(driver: Any, agent: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(by_id(driver, "new-agent")).select_by_visible_text(agent)
    by_id(driver, "new-conversation").click()
    wait(driver, lambda d: present(d, "#chat [data-turn=message]"))


def say(driver: Any, words: str, outcome: str) -> str:
    """Send a message; wait until the streamed turn ends with ``outcome``."""
    driver.execute_script("document.getElementById('turn-status').textContent = ''")
    by_id(driver, "message").send_keys(words)
    by_id(driver, "send").click()
    return str(
        wait(
            driver,
            lambda d: (
                outcome in by_id(d, "turn-status").text
                and d.execute_script("return document.getElementById('live').hidden")
                and by_id(d, "turn-status").text
            ),
        )
    )


def test_sign_in_and_chat_a_streamed_turn(
    browser: Any, live: LiveServer, llm: ScriptedLLM, keys: dict[str, str], screenshots: Any
) -> None:
    sign_in(browser, live, keys["alice"])
    start_conversation(browser, "assistant")
    reply = "Hello Alice, this answer came over the stream word by word."
    llm.enqueue(Reply(reply))
    status = say(browser, "hello console", "Turn complete")
    # One token event per scripted word: the page showed the stream, not one JSON answer.
    assert int(by_id(browser, "turn-status").get_attribute("data-tokens")) == len(reply.split())
    assert "tokens streamed" in status
    transcript = by_id(browser, "transcript").text
    assert "hello console" in transcript and reply in transcript
    screenshots(browser, "chat")

    # A turn no model answered stays pending; the page offers to resume it from its checkpoint.
    llm.enqueue(Reply(status=500, error="boom"))
    assert "every usable model failed" in say(browser, "and now?", "Error 503")
    llm.enqueue(Reply("A late answer, after all."))
    by_id(browser, "resume-turn").click()
    wait(browser, lambda d: "A late answer, after all." in by_id(d, "transcript").text)
    assert "Turn complete" in by_id(browser, "turn-status").text
    assert not present(browser, "#resume-turn")
    browser.get(f"{live.url}/console/conversations")
    assert "assistant" in browser.find_element("css selector", "table").text


@pytest.mark.slow  # the plan's dry run migrates a shadow database
def test_an_admin_approves_a_mechanic_plan_and_finds_the_audit_row(
    browser: Any,
    live: LiveServer,
    llm: ScriptedLLM,
    keys: dict[str, str],
    db: Database,
    screenshots: Any,
) -> None:
    sign_in(browser, live, keys["admin"])
    start_conversation(browser, "mechanic")
    conversation = browser.current_url
    llm.enqueue(
        Reply(tool_calls=[ToolCall("propose_change", {"spec": IDEA, "instruction": "keep ideas"})]),
        Reply("Here is the plan."),
    )
    say(browser, "keep track of ideas", "Turn complete")
    with db.engine.connect() as conn:
        change_id = str(
            conn.execute(
                text("SELECT id FROM mechanic_changes ORDER BY created_at DESC LIMIT 1")
            ).scalar_one()
        )
    llm.enqueue(
        Reply(tool_calls=[ToolCall("apply_change", {"change_id": change_id})]),
        Reply("Applied, the idea table is live."),
    )
    say(browser, "apply it", "Waiting for your decision")
    assert "apply_change" in by_id(browser, "approval").text

    browser.get(f"{live.url}/console/mechanic")
    browser.find_element("css selector", f"a[href='/console/mechanic/{change_id}']").click()
    wait(browser, lambda d: present(d, "#sql"))
    assert "CREATE TABLE" in by_id(browser, "sql").text
    assert "passed" in by_id(browser, "dry-run").text
    assert "idea" in by_id(browser, "diff").text
    assert by_id(browser, "change-status").text == "planned"
    screenshots(browser, "mechanic-plan")

    by_id(browser, "approve").click()
    wait(browser, lambda d: "Turn complete" in by_id(d, "turn-status").text)
    wait(browser, lambda d: "Applied change" in by_id(d, "transcript").text)
    browser.refresh()
    assert by_id(browser, "change-status").text == "applied"
    with db.engine.connect() as conn:
        status = conn.execute(
            text("SELECT status FROM mechanic_changes WHERE id = :i"), {"i": change_id}
        ).scalar_one()
    assert status == "applied"

    browser.get(f"{live.url}/console/audit")
    field = browser.find_element("css selector", "input[name=action]")
    field.send_keys("schema_change")
    by_id(browser, "filter").click()  # htmx swaps the rows in
    wait(browser, lambda d: "action=schema_change" in d.current_url)
    rows = wait(browser, lambda d: change_id in by_id(d, "audit").text and by_id(d, "audit").text)
    assert "schema_change" in rows and "succeeded" in rows
    screenshots(browser, "audit")

    # Asked to roll it back, the admin rejects that from the change's page, saying why.
    browser.get(conversation)
    llm.enqueue(
        Reply(tool_calls=[ToolCall("rollback_change", {"change_id": change_id})]),
        Reply("Understood, it stays."),
    )
    say(browser, "undo it", "Waiting for your decision")
    browser.get(f"{live.url}/console/mechanic/{change_id}")
    assert "rollback_change" in by_id(browser, "approval").text
    browser.find_element("css selector", "#approval input[name=reason]").send_keys("keep it")
    by_id(browser, "reject").click()
    wait(browser, lambda d: "did not approve the rollback" in by_id(d, "transcript").text)
    browser.refresh()
    assert by_id(browser, "change-status").text == "applied"
    assert not present(browser, "#approval")
    cells = browser.find_elements("css selector", "#history td:nth-child(2)")
    assert [c.text for c in cells] == [
        "change_proposed",
        "change_approved",
        "schema_change",
        "change_refused",
    ]


def test_a_non_admin_sees_no_admin_page_or_action(
    browser: Any, live: LiveServer, keys: dict[str, str], screenshots: Any
) -> None:
    sign_in(browser, live, keys["bob"])
    assert not present(browser, "#nav-mechanic") and not present(browser, "#nav-audit")
    offered = browser.find_element("css selector", "#new-agent").text.split()
    assert "assistant" in offered and "mechanic" not in offered  # core/registry/access.py
    for page in ("mechanic", "audit"):
        browser.get(f"{live.url}/console/{page}")
        assert browser.find_element("css selector", "h1").text == "Forbidden"
    browser.get(f"{live.url}/console/agents")
    assert not present(browser, "#sync-agents") and not present(browser, ".tool-switch")
    assert "mechanic" in by_id(browser, "agents").text  # listed, as GET /v1/agents lists it
    screenshots(browser, "agents-non-admin")
    # A hand-made request with the page's own CSRF token is still refused: the REST rule.
    status = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch('/console/agents/sync', {method: 'POST', headers: {'X-CSRF-Token':
          document.querySelector('meta[name=csrf-token]').content}}).then(r => done(r.status));"""
    )
    assert status == 403
