"""The public datasets the benchmarks read in place from AGENTRY_DATASETS_DIR (never copied).

CISI (search quality: documents, queries, relevance judgements) and DailyDialog
(conversation turns); see the datasets folder's README.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError, NotFoundError


@dataclass
class Cisi:
    docs: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, set[str]]


def _records(path: Path) -> list[dict[str, str]]:
    records: list[dict[str, str]] = []
    field = None
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith(".I "):
            records.append({"I": line[3:].strip()})
            field = None
        elif len(line) >= 2 and line[0] == "." and line[1] in "TAWXB" and line[2:].strip() == "":
            field = line[1]
        elif field and records:
            records[-1][field] = (records[-1].get(field, "") + " " + line.strip()).strip()
    return records


def load_cisi(folder: Path) -> Cisi:
    """Parse CISI.ALL, CISI.QRY and CISI.REL from ``folder``.

    Raises:
        NotFoundError: the folder or a file is missing (AGENTRY_DATASETS_DIR).
    """
    files = [folder / n for n in ("CISI.ALL", "CISI.QRY", "CISI.REL")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise NotFoundError(f"CISI not found: {', '.join(missing)} (set AGENTRY_DATASETS_DIR)")
    docs = {r["I"]: f"{r.get('T', '')}\n{r.get('W', '')}".strip() for r in _records(files[0])}
    queries = {r["I"]: r.get("W") or r.get("T", "") for r in _records(files[1])}
    qrels: dict[str, set[str]] = {}
    for line in files[2].read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            qrels.setdefault(parts[0], set()).add(parts[1])
    return Cisi(docs, queries, {q: r for q, r in qrels.items() if q in queries})


def load_dialogues(datasets_dir: Path, limit: int) -> list[list[str]]:
    """DailyDialog test dialogues: one per line, utterances separated by ``__eou__``."""
    path = datasets_dir / "dailydialog" / "dialogues_test.txt"
    if not path.is_file():
        raise ConfigError(f"{path} not found: set AGENTRY_DATASETS_DIR to the datasets folder")
    dialogues = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            turns = [u.strip() for u in line.split("__eou__") if u.strip()]
            if turns:
                dialogues.append(turns)
            if len(dialogues) >= limit:
                break
    return dialogues
