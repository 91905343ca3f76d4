"""``agentry bench memory``: conversational recall on LoCoMo, against plain baselines.

Each LoCoMo file becomes one user; each of its sessions one conversation, imported
through the JSON Lines import path (core/conversations/importing.py) and embedded
by the same worker loop as ``agentry import``. Every question of categories 1-4 is
then asked through :func:`core.memory.conversational.recall`, scoped to that user,
and recall@k of the evidence turns is reported per category beside three plain
baselines computed in the same run on the same turns, one turn per document:
exact cosine, BM25 and their reciprocal rank fusion.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from config import Settings
from core.auth.users import create_user
from core.bench.database import bench_database
from core.bench.metrics import latency_ms, recall_at
from core.conversations.importing import ImportConversation, ImportReport, import_conversations
from core.errors import ValidationFailed
from core.memory.conversational import recall
from core.memory.drain import drain_pending
from core.memory.embeddings import get_embedder
from core.memory.filters import SearchFilter
from core.memory.search import fuse, keyword_hits, vector_search
from core.memory.strategy import PlanKind

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (5, 10, 25)
DATE_FORMAT = "%I:%M %p on %d %B, %Y"  # "1:56 pm on 8 May, 2023"
DIA_IDS_SQL = text(
    "SELECT m.id, m.lc_id FROM messages m JOIN conversations c ON c.id = m.conversation_id "
    "WHERE c.user_id = :uid"
)
Progress = Callable[[str, int, int], None]


def locomo_conversations(data: dict[str, Any], name: str) -> list[ImportConversation]:
    """One import conversation per LoCoMo session; messages keep their ``dia_id``."""
    out = []
    n = 1
    while f"session_{n}" in data:
        start = datetime.strptime(data[f"session_{n}_date_time"].strip(), DATE_FORMAT)
        messages = []
        for i, turn in enumerate(data[f"session_{n}"]):
            content = turn["text"]
            if turn.get("blip_caption"):
                content += f" [shares a photo: {turn['blip_caption']}]"
            messages.append(
                {
                    "id": turn["dia_id"],
                    "role": "user" if turn["speaker"] == data["speaker_a"] else "assistant",
                    "speaker": turn["speaker"],
                    "content": content,
                    "timestamp": (start + timedelta(seconds=30 * i)).isoformat() + "+00:00",
                }
            )
        out.append(
            ImportConversation.model_validate(
                {"conversation": f"locomo-{name}-session-{n}", "messages": messages}
            )
        )
        n += 1
    return out


def _baselines(
    conn: Connection, query: str, uid: uuid.UUID, settings: Settings, vector: Any, depth: int
) -> dict[str, list[uuid.UUID]]:
    turn = SearchFilter(user_id=uid, entity_type="message", context=False)
    dense = vector_search(conn, vector, turn, k=depth, settings=settings, force=PlanKind.exact)
    bm25 = keyword_hits(conn, query, turn, k=depth, settings=settings)
    fused = fuse({"vector": dense, "keyword": bm25}, k=depth, rrf_k=60, weights={})
    return {
        "dense_exact": [h.entity_id for h in dense],
        "bm25": [h.entity_id for h in bm25],
        "fusion": [h.entity_id for h in fused],
    }


def _summary(scores: dict[int, list[list[float]]]) -> dict[str, Any]:
    """Mean recall@k per category and over categories 1-4 (questions weighted equally)."""
    out: dict[str, Any] = {}
    every: list[list[float]] = []
    for cat, rows in sorted(scores.items()):
        every += rows
        out[CATEGORIES[cat]] = {
            f"recall@{k}": round(statistics.fmean(r[i] for r in rows), 3) for i, k in enumerate(KS)
        } | {"questions": len(rows)}
    out["all"] = {
        f"recall@{k}": round(statistics.fmean(r[i] for r in every), 3) if every else 0.0
        for i, k in enumerate(KS)
    } | {"questions": len(every)}
    return out


def run_memory_bench(
    settings: Settings,
    *,
    files: list[str] | None = None,
    limit_questions: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Import LoCoMo, ask every question of categories 1-4, report recall@k and timings.

    Args:
        settings: the configured settings (AGENTRY_DATASETS_DIR locates ``locomo/``).
        files: conversation file stems (``26``, ...); default every file there.
        limit_questions: ask at most this many questions per conversation.
        progress: ``(phase, done, total)``.

    Raises:
        ValidationFailed: the LoCoMo files are missing.
    """
    folder = Path(settings.datasets_dir) / "locomo"
    paths = sorted(folder.glob("*.json"))
    if files:
        paths = [p for p in paths if p.stem in set(files)]
    if not paths:
        raise ValidationFailed(f"--conversations: no LoCoMo files in {folder}")
    datasets = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in paths}
    embedder = get_embedder(settings)
    embedder.embed_query("warm up")  # loading the model is not ingest time
    with bench_database(settings, "memory") as (db, bench_settings):
        report = ImportReport()
        users: dict[str, uuid.UUID] = {}
        started = time.perf_counter()
        with db.engine.begin() as conn:
            for name, data in datasets.items():
                user, _ = create_user(conn, f"locomo-{name}@bench.invalid")
                users[name] = user.id
                items = [(c.conversation, c) for c in locomo_conversations(data, name)]
                import_conversations(conn, items, report, default_user=user.id)
        imported = time.perf_counter() - started
        drain_pending(
            db.engine,
            embedder,
            batch_size=256,
            progress=(lambda d, t: progress("embedding", d, t)) if progress else None,
        )
        ingest = time.perf_counter() - started
        if report.skipped:
            raise ValidationFailed(f"LoCoMo import skipped rows: {report.skipped[:3]}")
        methods = ("recall", "dense_exact", "bm25", "fusion")
        scores: dict[str, dict[int, list[list[float]]]] = {m: {} for m in methods}
        latencies: list[float] = []
        questions = [
            (name, q)
            for name, data in datasets.items()
            for q in [q for q in data["qa"] if q.get("category") in CATEGORIES][:limit_questions]
        ]
        with db.engine.connect() as conn:
            dia: dict[str, dict[uuid.UUID, str]] = {
                name: {r.id: r.lc_id for r in conn.execute(DIA_IDS_SQL, {"uid": uid})}
                for name, uid in users.items()
            }
            conn.commit()
            for done, (name, q) in enumerate(questions, start=1):
                evidence = {e.strip() for e in q["evidence"]}
                with conn.begin():
                    t0 = time.perf_counter()
                    hits = recall(
                        conn,
                        q["question"],
                        user_id=users[name],
                        k=max(KS),
                        settings=bench_settings,
                        embedder=embedder,
                    )
                    latencies.append(time.perf_counter() - t0)
                    ranked = {"recall": [h.entity_id for h in hits]}
                    vector = embedder.embed_query(q["question"])
                    ranked |= _baselines(
                        conn, q["question"], users[name], bench_settings, vector, max(KS)
                    )
                for method, ids in ranked.items():
                    names = [dia[name].get(i) for i in ids]
                    row = [recall_at([str(n) for n in names], evidence, k) for k in KS]
                    scores[method].setdefault(int(q["category"]), []).append(row)
                if progress:
                    progress("questions", done, len(questions))
    return {
        "dataset": "locomo",
        "conversations": sorted(datasets),
        "questions": len(questions),
        "recall": _summary(scores["recall"]),
        "baselines": {m: _summary(scores[m]) for m in methods[1:]},
        "ingest": {
            "messages": report.messages,
            "index_rows": report.indexed,
            "seconds": round(ingest, 2),
            "import_seconds": round(imported, 2),
            "messages_per_second": round(report.messages / ingest, 1) if ingest else 0.0,
        },
        "query": latency_ms(latencies),
        "embedding_model": embedder.model,
    }
