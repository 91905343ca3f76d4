"""The benchmark's instant model: the scripted OpenAI-compatible server in a process of
its own, so serving it takes no CPU or GIL from the process being measured (as a real
endpoint would not).

Run as ``python -m core.bench.model_server``: prints the base URL, serves until stdin closes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from core.devtools.scripted_llm import ScriptedLLM
from core.errors import AgentryError


@contextmanager
def model_server() -> Iterator[str]:
    """Start the server in a child process; yields its base URL."""
    child = subprocess.Popen(
        [sys.executable, "-m", "core.bench.model_server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        if not url.startswith("http"):
            raise AgentryError("the benchmark's model server did not start")
        yield url
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def main() -> None:
    with ScriptedLLM() as llm:
        print(llm.base_url, flush=True)
        sys.stdin.read()  # until the parent closes it


if __name__ == "__main__":
    main()
