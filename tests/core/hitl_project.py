"""A project folder for human-in-the-loop tests: an agent whose tools need approval
and a tool that asks the person a question with LangGraph's ``interrupt()``."""

from __future__ import annotations

from pathlib import Path

from core.mechanic.scratch import RUNTIME_PARTS, populate
from tests.core.runtime.helpers import ROOT

CAREFUL = """\
name: careful
description: Asks before it reads the clock.
system_prompt: You check with the person before acting.
tools: [current_time, ask_person]
approve_tools: [current_time]
"""

ASK_PERSON = '''\
"""Ask the person a question and wait for the answer."""

from langgraph.types import interrupt


def ask_person(question: str) -> str:
    """Ask the person something and wait for their answer.

    Args:
        question: what to ask.
    """
    return f"the person answered: {interrupt({'question': question})}"
'''


def hitl_project(folder: Path) -> Path:
    """The repository's agents and tools plus ``careful`` and ``ask_person``, in ``folder``."""
    populate(folder, RUNTIME_PARTS, source=ROOT)
    (folder / "agents" / "careful.yaml").write_text(CAREFUL, encoding="utf-8")
    (folder / "tools" / "ask_person.py").write_text(ASK_PERSON, encoding="utf-8")
    return folder
