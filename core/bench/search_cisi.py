"""CISI quality benchmark: nDCG@10 and recall@100 of every search mode, through the platform.

Documents (title + abstract) go through :func:`index_document` and the embedding
queue exactly like messages do; the 76 judged queries run through :func:`search`
(admin scope, so the vector mode is a plain HNSW scan) and through an exact kNN
scan with the same model — the ceiling an approximate index is measured against.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from config import Settings
from core.bench.database import bench_database
from core.bench.datasets import load_cisi
from core.bench.metrics import latency_ms, ndcg_at, recall_at
from core.memory.drain import drain_pending
from core.memory.embeddings import get_embedder
from core.memory.filters import SearchFilter
from core.memory.indexer import index_document
from core.memory.keyword_index import maintain
from core.memory.search import Hit, fuse, keyword_hits, search, vector_search
from core.memory.strategy import PlanKind

NAMESPACE = uuid.UUID("6f0e2a4e-3c1b-4f7e-9a51-0c1515c15100")
# (rrf_k, vector weight, keyword weight): fused from the same per-mode lists, no new queries.
RRF_SWEEP = [(rrf_k, 1.0, wk) for rrf_k in (5, 10, 20, 40, 60) for wk in (0.25, 0.5, 0.75, 1.0)]


def _doc_ids(hits: list[Hit]) -> list[str]:
    return [str(h.metadata.get("doc")) for h in hits]


def run_cisi(
    settings: Settings,
    *,
    limit_queries: int | None = None,
    limit_docs: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Index CISI into a throwaway database and measure every mode.

    Args:
        settings: the configuration under test (model, HNSW, RRF, chunking).
        limit_queries / limit_docs: smaller runs (smoke tests).
        progress: progress(phase, done, total).

    Returns:
        The JSON-ready report.
    """
    data = load_cisi(settings.datasets_dir / "cisi")
    docs = list(data.docs.items())[:limit_docs]
    judged = sorted(data.qrels, key=int)[:limit_queries]
    embedder = get_embedder(settings)
    report: dict[str, Any] = {"dataset": "cisi", "documents": len(docs), "queries": len(judged)}
    with bench_database(settings, "cisi") as (db, bsettings):
        start = time.perf_counter()
        with db.engine.begin() as conn:
            for doc_id, body in docs:
                index_document(
                    conn,
                    entity_type="cisi",
                    entity_id=uuid.uuid5(NAMESPACE, doc_id),
                    text=body,
                    user_id=None,
                    metadata={"doc": doc_id},
                    settings=bsettings,
                )
        embedded = drain_pending(
            db.engine,
            embedder,
            batch_size=bsettings.embedding_batch_size,
            threads=bsettings.embed_threads,
            progress=(lambda done, total: progress("embed", done, total)) if progress else None,
        )
        maintain(db.engine, bsettings)  # keyword postings weighted with CISI's own average length
        ingest = time.perf_counter() - start
        report["chunks"] = embedded
        report["ingest_seconds"] = round(ingest, 2)
        report["ingest_docs_per_second"] = round(len(docs) / ingest, 1)

        lists: dict[str, dict[str, list[str]]] = {m: {} for m in ("vector", "keyword", "exact")}
        ranked_hits: dict[str, dict[str, list[Hit]]] = {"vector": {}, "keyword": {}}
        hybrid_lists: dict[str, list[str]] = {}
        timings: dict[str, list[float]] = {m: [] for m in ("vector", "keyword", "hybrid", "exact")}
        embed_times: list[float] = []
        db_times: list[float] = []
        everything = SearchFilter()
        with db.engine.begin() as conn:
            for i, qid in enumerate(judged):
                query = data.queries[qid]
                t = time.perf_counter()
                qvec = embedder.embed_query(query)
                embed_times.append(time.perf_counter() - t)
                t = time.perf_counter()
                vector_search(conn, qvec, everything, k=10, settings=bsettings)
                db_times.append(time.perf_counter() - t)
                vec = vector_search(conn, qvec, everything, k=100, settings=bsettings)
                exact = vector_search(
                    conn, qvec, everything, k=100, settings=bsettings, force=PlanKind.exact
                )
                kw = keyword_hits(conn, query, everything, k=100, settings=bsettings)
                hyb = search(
                    conn, query, user_id=None, k=100, settings=bsettings, embedder=embedder
                )
                ranked_hits["vector"][qid], ranked_hits["keyword"][qid] = vec, kw
                lists["vector"][qid], lists["exact"][qid] = _doc_ids(vec), _doc_ids(exact)
                lists["keyword"][qid], hybrid_lists[qid] = _doc_ids(kw), _doc_ids(hyb)
                # Latency of what a user waits for: k=10, query embedding included.
                for mode in ("vector", "keyword", "hybrid"):
                    t = time.perf_counter()
                    search(
                        conn,
                        query,
                        user_id=None,
                        mode=mode,
                        k=10,
                        settings=bsettings,
                        embedder=embedder,
                    )
                    timings[mode].append(time.perf_counter() - t)
                t = time.perf_counter()
                vector_search(
                    conn,
                    embedder.embed_query(query),
                    everything,
                    k=10,
                    settings=bsettings,
                    force=PlanKind.exact,
                )
                timings["exact"].append(time.perf_counter() - t)
                if progress:
                    progress("queries", i + 1, len(judged))
        lists["hybrid"] = hybrid_lists

    def score(by_query: dict[str, list[str]]) -> dict[str, float]:
        return {
            "ndcg@10": round(
                statistics.fmean(ndcg_at(by_query[q], data.qrels[q], 10) for q in judged), 4
            ),
            "recall@100": round(
                statistics.fmean(recall_at(by_query[q], data.qrels[q], 100) for q in judged), 4
            ),
        }

    modes = {m: {**score(lists[m]), **latency_ms(timings[m])} for m in lists}
    sweep = []
    for rrf_k, wv, wk in RRF_SWEEP:
        fused = {
            q: _doc_ids(
                fuse(
                    {"vector": ranked_hits["vector"][q], "keyword": ranked_hits["keyword"][q]},
                    k=100,
                    rrf_k=rrf_k,
                    weights={"vector": wv, "keyword": wk},
                )
            )
            for q in judged
        }
        sweep.append({"rrf_k": rrf_k, "vector_weight": wv, "keyword_weight": wk, **score(fused)})
    exact_ndcg = modes["exact"]["ndcg@10"] or 1.0
    best_single = max(modes["vector"]["ndcg@10"], modes["keyword"]["ndcg@10"])
    report.update(
        modes=modes,
        latency_parts={
            "query_embedding": latency_ms(embed_times),
            "hnsw_query_k10_without_embedding": latency_ms(db_times),
        },
        rrf={
            "configured": {
                "rrf_k": settings.rrf_k,
                "vector_weight": settings.hybrid_vector_weight,
                "keyword_weight": settings.hybrid_keyword_weight,
                "depth": settings.hybrid_depth,
            },
            "sweep": sweep,
        },
        ratios={
            "hnsw_vs_exact_ndcg": round(modes["vector"]["ndcg@10"] / exact_ndcg, 4),
            "hybrid_vs_best_single_ndcg": round(modes["hybrid"]["ndcg@10"] / (best_single or 1), 4),
        },
        goals={
            "hnsw_ge_0.99_exact": modes["vector"]["ndcg@10"] >= 0.99 * modes["exact"]["ndcg@10"],
            "hybrid_ge_best_single": modes["hybrid"]["ndcg@10"] >= best_single,
        },
        settings={
            "model": embedder.model,
            "hnsw_m": settings.hnsw_m,
            "hnsw_ef_construction": settings.hnsw_ef_construction,
            "hnsw_ef_search": settings.hnsw_ef_search,
            "chunk_size": settings.chunk_size,
            "chunk_overlap": settings.chunk_overlap,
        },
    )
    return report
