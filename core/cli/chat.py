"""``agentry chat``: an interactive client of a running server that streams tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import typer
from rich.markdown import Markdown

from config import get_settings
from core.cli.edge import console, edge
from core.errors import AgentryError, AuthError

QUIT = {"/quit", "/exit"}


def _check(response: httpx.Response) -> Any:
    if response.status_code == 401:
        raise AuthError("the server refused the API key (--api-key or AGENTRY_API_KEY)")
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise AgentryError(f"server answered {response.status_code}: {detail}")
    return response.json()


def _events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    kind, data = "", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and kind:
            yield kind, json.loads(data or "{}")
            kind, data = "", ""


def _turn(client: httpx.Client, conversation_id: str, content: str) -> None:
    """One message, then as many decisions as the turn asks the person for."""
    path = f"/v1/conversations/{conversation_id}"
    interrupts = _stream(client, f"{path}/messages", {"content": content})
    while interrupts:
        answers = {i["id"]: _ask(i) for i in interrupts}
        body: dict[str, Any] = (
            {"decision": next(iter(answers.values()))}
            if len(answers) == 1
            else {"decisions": answers}
        )
        interrupts = _stream(client, f"{path}/resume", body)


def _ask(interrupt: dict[str, Any]) -> Any:
    """The person's answer to one interrupt: a tool approval, or a question."""
    value = interrupt["value"]
    request = value[0] if isinstance(value, list) and value else value
    if isinstance(request, dict) and "action_request" in request:
        action = request["action_request"]
        if not request.get("config", {}).get("allow_edit", True) and request.get("description"):
            # The mechanic's apply and rollback carry their plan: the person reads it first.
            console.print(Markdown(str(request["description"])))
        console.print(
            f"[bold yellow]approve?[/] {action['action']}({json.dumps(action['args'])})",
            highlight=False,
        )
        while True:
            choice = console.input("[bold green](y)es / (n)o / (e)dit>[/] ").strip().lower()
            if choice in ("y", "yes"):
                return {"type": "accept"}
            if choice in ("n", "no"):
                reason = console.input("[bold green]why (optional)>[/] ").strip()
                return {"type": "response", "args": reason} if reason else {"type": "ignore"}
            if choice in ("e", "edit"):
                args = _ask_arguments()
                if args is not None:
                    return {"type": "edit", "args": {"action": action["action"], "args": args}}
    question = request.get("question", request) if isinstance(request, dict) else request
    console.print("[bold yellow]asks:[/] ", end="")
    console.print(str(question), highlight=False, markup=False)
    return console.input("[bold green]answer>[/] ")


def _ask_arguments() -> dict[str, Any] | None:
    """New arguments as a JSON object (an empty line goes back to the choice)."""
    while True:
        raw = console.input("[bold green]arguments (JSON)>[/] ").strip()
        if not raw:
            return None
        try:
            args = json.loads(raw)
        except ValueError:
            args = None
        if isinstance(args, dict):
            return args
        console.print("[red]arguments must be a JSON object[/]")


def _stream(client: httpx.Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Stream one request's turn to the console; the interrupts it paused on, if any."""
    interrupts: list[dict[str, Any]] = []
    with client.stream(
        "POST", path, json=body, headers={"Accept": "text/event-stream"}
    ) as response:
        if response.status_code >= 400:
            response.read()
            _check(response)
        started = False
        for kind, data in _events(response):
            if kind == "token":
                if not started:
                    console.print(f"[bold cyan]{data.get('agent', 'agent')}>[/] ", end="")
                    started = True
                console.print(data["text"], end="", highlight=False, markup=False, soft_wrap=True)
            elif kind == "tool_call":
                console.print(
                    f"[dim]  ⚙ {data['name']}({json.dumps(data['args'])})[/]", highlight=False
                )
            elif kind == "handoff":
                console.print(
                    f"[dim]  → handed to {data['to']}: {data.get('reason', '')}[/]", highlight=False
                )
            elif kind == "interrupt":
                interrupts = data["interrupts"]
            elif kind == "error":
                console.print(f"[bold red]error:[/] {data.get('detail')}", highlight=False)
            elif kind == "final":
                if started:
                    console.print()
                started = False
    return interrupts


@edge
def chat(
    agent: str = typer.Option(None, "--agent", help="Agent to talk to (default: assistant)."),
    url: str = typer.Option(
        None, "--url", help="Server URL (default http://AGENTRY_HOST:AGENTRY_PORT)."
    ),
    api_key: str = typer.Option(..., "--api-key", envvar="AGENTRY_API_KEY", help="Your API key."),
    conversation: str = typer.Option(None, "--conversation", help="Continue this conversation."),
) -> None:
    """Talk to an agent of a running server; answers stream as they are written."""
    settings = get_settings()
    base = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(
        base_url=base, headers=headers, timeout=httpx.Timeout(10, read=300)
    ) as client:
        try:
            if conversation:
                conv = _check(client.get(f"/v1/conversations/{conversation}"))
            else:
                body = {"agent": agent} if agent else {}
                conv = _check(client.post("/v1/conversations", json=body))
        except httpx.TransportError:
            raise AgentryError(f"cannot reach {base}: is `agentry up` running?") from None
        console.print(
            f"conversation {conv['id']} with {conv['current_agent']} (/quit or Ctrl-D to leave)"
        )
        while True:
            try:
                line = console.input("[bold green]you>[/] ")
            except (EOFError, KeyboardInterrupt):
                console.print()
                break
            if line.strip() in QUIT:
                break
            if not line.strip():
                continue
            try:
                _turn(client, conv["id"], line)
            except httpx.TransportError:
                raise AgentryError(f"lost the connection to {base}") from None
            except AgentryError as exc:
                # One bad turn (e.g. no model configured) does not end the session.
                console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
