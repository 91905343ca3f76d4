"""No silent gaps: a request no route serves gets a problem naming the operation.

Clients built on ``langgraph_sdk`` call operations Agentry does not serve (batch
runs, thread streams, ...). A bare 404 or 405 reads like a wrong URL or a missing
thread; instead the answer is 501 naming the SDK operation, with a pointer to the
README's support table (:func:`core.api.problems.install_problem_handlers`). Any
other unrouted request names its method and path.
"""

from __future__ import annotations

import re

SUPPORT_TABLE = "see the README's Agent Protocol support table"
_ID = r"[^/]+"

# (method, path pattern, langgraph_sdk operation) of what no route of Agentry serves.
# A route added later for one of these simply wins: routing comes first.
UNSERVED: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(f"^{pattern}/?$"), name)
    for method, pattern, name in (
        ("POST", "/assistants", "assistants.create"),
        ("PATCH", f"/assistants/{_ID}", "assistants.update"),
        ("DELETE", f"/assistants/{_ID}", "assistants.delete"),
        ("POST", f"/assistants/{_ID}/versions", "assistants.get_versions"),
        ("POST", f"/assistants/{_ID}/latest", "assistants.set_latest"),
        ("GET", f"/threads/{_ID}/stream", "threads.join_stream"),
        ("POST", f"/threads/{_ID}/stream", "threads.stream"),
        ("POST", f"/threads/{_ID}/commands", "threads.stream"),
        ("POST", "/runs/batch", "runs.create_batch"),
        ("POST", "/runs/cancel", "runs.cancel_many"),
        ("POST", f"/threads/{_ID}/runs/crons", "crons.create_for_thread"),
        ("POST", "/runs/crons", "crons.create"),
        ("POST", "/runs/crons/search", "crons.search"),
        ("POST", "/runs/crons/count", "crons.count"),
        ("PATCH", f"/runs/crons/{_ID}", "crons.update"),
        ("DELETE", f"/runs/crons/{_ID}", "crons.delete"),
        ("*", "/a2a(/.*)?", "A2A"),
        ("*", "/mcp(/.*)?", "MCP"),
    )
]


def operation(method: str, path: str) -> str | None:
    """The SDK operation ``method path`` is, when it is one Agentry does not serve."""
    for wanted, pattern, name in UNSERVED:
        if wanted in ("*", method) and pattern.match(path):
            return name
    return None
