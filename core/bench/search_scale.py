"""Scale benchmark: recall, latency, throughput and filtered completeness on N vectors.

The rows are clustered synthetic vectors with real CISI / DailyDialog embeddings mixed
in (core/bench/scale_data.py), loaded with binary COPY and indexed with one HNSW build
(progress from PostgreSQL's own build progress); recall is measured against numpy
exact kNN in the same run. Filters: a user owning 1% of the rows (btree on user_id)
and a metadata tag on 0.1% (GIN on metadata), each answered by the planned strategy
and forced through the index. With several vector types (``--vector-type both``) each
is loaded into its own throwaway database in the same run and compared.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import text

from config import Settings
from core.bench.database import bench_database
from core.bench.metrics import latency_ms
from core.bench.scale_data import ScaleData, scale_data, top_ids
from core.bench.search_ingest import ingest_rate
from core.db.extensions import format_version, installed_version, supports_iterative_scan
from core.memory.bulk import BulkRow, bulk_load
from core.memory.filters import SearchFilter
from core.memory.strategy import PlanKind
from core.memory.vector_query import run_vector_query

Progress = Callable[[str, int, int], None]
K = 10
CLIENT_SECONDS = 5.0
SWEEP = (20, 40, 64, 100, 200, 400)
USERS_SQL = text("INSERT INTO users (id, email, api_key_hash) VALUES (:i, :e, :h)")
SERVER_SQL = text("SHOW server_version")


def _quiet(phase: str, done: int, total: int) -> None:
    return None


def _truth(data: ScaleData, progress: Progress) -> dict[str, list[list[int]]]:
    """Exact top-k per query: unfiltered, within the 1% owner and the 0.1% tag.

    The similarities of a block of queries come from one pass over the rows (a matrix
    product), not one pass per query: at a million rows that pass is 1.5 GB of memory.
    """
    out: dict[str, list[list[int]]] = {"none": [], "owner": [], "tagged": []}
    masks = {"none": None, "owner": data.owner, "tagged": data.tagged}
    step = 50
    for start in range(0, len(data.queries), step):
        sims = data.vectors @ data.queries[start : start + step].T
        for j in range(sims.shape[1]):
            for name, mask in masks.items():
                out[name].append(top_ids(sims[:, j], mask, K))
        progress("exact kNN (ground truth)", start + sims.shape[1], len(data.queries))
    return out


def run_scale(
    settings: Settings,
    *,
    n: int,
    queries: int = 200,
    ingest_sample: int = 2000,
    vector_types: Sequence[str] | None = None,
    layout: str = "fitted",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Measure search over ``n`` vectors for each vector type; returns the JSON report."""
    tell = progress or _quiet
    kinds = list(vector_types or [settings.vector_type])
    data = scale_data(settings, n, queries, layout=layout, progress=tell)
    truth = _truth(data, tell)
    report: dict[str, Any] = {
        "dataset": "synthetic + real",
        "rows": n,
        "dims": settings.embedding_dims,
        "queries": len(data.queries),
        "real_rows": data.sources,
        "real_queries": data.query_kinds.count("cisi"),
    }
    measured = {}
    for i, kind in enumerate(kinds):
        typed = settings.model_copy(update={"vector_type": kind})
        measured[kind] = _measure(typed, data, truth, ingest_sample if i == 0 else 0, tell)
    if len(kinds) == 1:
        report.update(measured[kinds[0]])
    else:
        report["by_type"] = measured
        report["comparison"] = _compare(measured)
    report["settings"] = {
        "vector_types": kinds,
        "hnsw_m": settings.hnsw_m,
        "hnsw_ef_construction": settings.hnsw_ef_construction,
        "hnsw_ef_search": settings.hnsw_ef_search,
        "maintenance_work_mem": settings.index_build_memory,
        "build_workers": settings.index_build_workers,
        "exact_threshold": settings.search_exact_threshold,
        "layout": data.layout,
        "vectors": (
            "Gaussian clusters around 2,000 of the real embeddings, shaped by their "
            "covariance (core/memory/synthetic.py fitted_vectors)"
            if data.layout == "fitted"
            else "200-cluster Gaussian mixture in 32 latent dims projected to 384 "
            "(core/memory/synthetic.py clustered_vectors), nearly orthogonal to the real texts"
        )
        + "; real CISI/DailyDialog embeddings mixed in; a quarter of the queries are real "
        "CISI queries; ground truth by numpy exact kNN",
        "latency": "database side, query vector given (embedding a query adds ~10-30 ms)",
    }
    return report


def _measure(
    settings: Settings,
    data: ScaleData,
    truth: dict[str, list[list[int]]],
    ingest_sample: int,
    tell: Progress,
) -> dict[str, Any]:
    n, kind = len(data.vectors), settings.vector_type
    one, rest = uuid.uuid4(), uuid.uuid4()
    out: dict[str, Any] = {"vector_type": kind}
    with bench_database(settings, f"scale_{kind}") as (db, bs):
        with db.engine.begin() as conn:
            for uid, mail in ((one, "one@bench"), (rest, "rest@bench")):
                conn.execute(USERS_SQL, {"i": uid, "e": mail, "h": uuid.uuid4().hex})
            version = installed_version(conn)
            out["server"] = {
                "postgresql": conn.execute(SERVER_SQL).scalar(),
                "pgvector": format_version(version),
            }
        rows = (
            BulkRow(
                "doc",
                uuid.uuid4(),
                data.content(i),
                data.vectors[i],
                "synthetic" if i not in data.real_rows else "real",
                one if data.owner[i] else rest,
                {"tag": "rare"} if data.tagged[i] else {},
            )
            for i in range(n)
        )
        load = bulk_load(
            db.conninfo,
            rows,
            bs,
            expected=n,
            progress=lambda d: tell(f"copy ({kind})", d, n),
            build_progress=lambda d, t: tell(f"HNSW build ({kind})", d, t),
        )
        out["load"] = {
            "copy_seconds": round(load.copy_seconds, 2),
            "copy_rows_per_second": round(n / max(load.copy_seconds, 1e-9)),
            "index_build_seconds": round(load.index_seconds, 2),
            "index_bytes": load.index_bytes,
            "index_mb": round(load.index_bytes / 2**20, 1),
        }
        through_index = (
            PlanKind.iterative
            if version is not None and supports_iterative_scan(version)
            else PlanKind.overfetch
        )
        cases: dict[str, tuple[SearchFilter, str, PlanKind | None]] = {
            "unfiltered": (SearchFilter(), "none", None),
            "filter_1pct_user": (SearchFilter(user_id=one), "owner", None),
            "filter_0.1pct_metadata": (SearchFilter(metadata={"tag": "rare"}), "tagged", None),
            f"filter_1pct_user_{through_index.value}": (
                SearchFilter(user_id=one),
                "owner",
                through_index,
            ),
            f"filter_0.1pct_metadata_{through_index.value}": (
                SearchFilter(metadata={"tag": "rare"}),
                "tagged",
                through_index,
            ),
        }
        matching = {"none": n, "owner": int(data.owner.sum()), "tagged": int(data.tagged.sum())}
        # A fresh index is on disk, not in shared buffers: the first pass reads its pages
        # in (reported apart); what follows is the steady state a running server sees.
        out["first_pass_after_build"] = _warm(db, bs, data, tell)
        out["search"] = {
            name: _case(
                db, bs, data, truth[which], flt, force, f"{name} ({kind})", tell, matching[which]
            )
            for name, (flt, which, force) in cases.items()
        }
        out["ef_search_sweep"] = _sweep(db, bs, data, truth["none"])
        out["clients"] = {str(c): _clients(db, bs, data, c) for c in (1, 4)}
        out["ingest"] = ingest_rate(db, bs, ingest_sample) if ingest_sample else None
    un = out["search"]["unfiltered"]
    out["goals"] = {
        "recall@10_ge_0.95": un[f"recall@{K}"] >= 0.95,
        "p95_le_10ms_single_client": un["p95_ms"] <= 10,
        "filtered_always_k": all(v["always_k"] for v in out["search"].values()),
    }
    return out


def _case(
    db: Any,
    settings: Settings,
    data: ScaleData,
    truth: list[list[int]],
    flt: SearchFilter,
    force: PlanKind | None,
    label: str,
    tell: Progress,
    matching: int,
) -> dict[str, Any]:
    lat: list[float] = []
    recalls: list[float] = []
    per_k: list[float] = []
    returned: list[int] = []
    plans: set[str] = set()
    real: list[float] = []
    synthetic: list[float] = []
    with db.engine.begin() as conn:
        for i, q in enumerate(data.queries):
            t = time.perf_counter()
            run = run_vector_query(conn, q, flt, limit=K, settings=settings, force=force)
            lat.append(time.perf_counter() - t)
            got = [int(r.content.split()[1]) for r in run.rows]
            want = truth[i]
            recalls.append(len(set(got) & set(want)) / len(want))
            per_k.append(len(got) / len(want))
            returned.append(len(got))
            (real if data.query_kinds[i] == "cisi" else synthetic).append(recalls[-1])
            plans.update(p.kind.value for p in run.plans)
            tell(label, i + 1, len(data.queries))
    return {
        f"recall@{K}": round(float(np.mean(recalls)), 4),
        "matching_rows": matching,
        "min_returned": min(returned),
        f"recall@{K}_synthetic_queries": round(float(np.mean(synthetic)), 4) if synthetic else None,
        f"recall@{K}_real_queries": round(float(np.mean(real)), 4) if real else None,
        "returned_per_k_mean": round(float(np.mean(per_k)), 4),
        "returned_per_k_min": round(float(np.min(per_k)), 4),
        "always_k": float(np.min(per_k)) == 1.0,
        "plans": sorted(plans),
        **latency_ms(lat),
    }


def _warm(db: Any, settings: Settings, data: ScaleData, tell: Progress) -> dict[str, Any]:
    """One unfiltered pass over the queries right after the build; its latency."""
    lat: list[float] = []
    with db.engine.begin() as conn:
        for i, q in enumerate(data.queries):
            t = time.perf_counter()
            run_vector_query(conn, q, SearchFilter(), limit=K, settings=settings)
            lat.append(time.perf_counter() - t)
            tell("first pass (index pages read in)", i + 1, len(data.queries))
    return latency_ms(lat)


def _clients(db: Any, settings: Settings, data: ScaleData, clients: int) -> dict[str, Any]:
    """Unfiltered k=10 queries from ``clients`` concurrent connections: QPS and latency."""
    lat: list[list[float]] = [[] for _ in range(clients)]
    stop = time.perf_counter() + CLIENT_SECONDS
    qvecs = data.queries

    def client(i: int) -> None:
        with db.engine.begin() as conn:
            j = i
            while time.perf_counter() < stop:
                t = time.perf_counter()
                run_vector_query(
                    conn, qvecs[j % len(qvecs)], SearchFilter(), limit=K, settings=settings
                )
                lat[i].append(time.perf_counter() - t)
                j += clients

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    every = [x for per in lat for x in per]
    return {"qps": round(len(every) / seconds, 1), **latency_ms(every)}


def _sweep(
    db: Any, settings: Settings, data: ScaleData, truth: list[list[int]]
) -> list[dict[str, Any]]:
    """Unfiltered recall@10 (synthetic and real queries apart) and latency per ef_search."""
    out = []
    for ef in SWEEP:
        tuned = settings.model_copy(update={"hnsw_ef_search": ef})
        lat: list[float] = []
        recalls: dict[str, list[float]] = {"synthetic": [], "cisi": []}
        with db.engine.begin() as conn:
            for i, q in enumerate(data.queries):
                t = time.perf_counter()
                run = run_vector_query(conn, q, SearchFilter(), limit=K, settings=tuned)
                lat.append(time.perf_counter() - t)
                got = {int(r.content.split()[1]) for r in run.rows}
                recalls[data.query_kinds[i]].append(len(got & set(truth[i])) / K)
        every = recalls["synthetic"] + recalls["cisi"]
        out.append(
            {
                "ef_search": ef,
                f"recall@{K}": round(float(np.mean(every)), 4),
                f"recall@{K}_synthetic_queries": round(float(np.mean(recalls["synthetic"])), 4),
                f"recall@{K}_real_queries": (
                    round(float(np.mean(recalls["cisi"])), 4) if recalls["cisi"] else None
                ),
                **latency_ms(lat),
            }
        )
    return out


def _compare(measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """halfvec against vector, measured in this run (ratios < 1: halfvec is smaller/faster)."""
    if set(measured) != {"vector", "halfvec"}:
        return {}
    v, h = measured["vector"], measured["halfvec"]
    vu, hu = v["search"]["unfiltered"], h["search"]["unfiltered"]

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    return {
        "index_mb": {"vector": v["load"]["index_mb"], "halfvec": h["load"]["index_mb"]},
        "index_size_ratio": ratio(h["load"]["index_bytes"], v["load"]["index_bytes"]),
        "build_seconds_ratio": ratio(
            h["load"]["index_build_seconds"], v["load"]["index_build_seconds"]
        ),
        f"recall@{K}": {"vector": vu[f"recall@{K}"], "halfvec": hu[f"recall@{K}"]},
        "p95_ms_ratio": ratio(hu["p95_ms"], vu["p95_ms"]),
        "qps_4_clients_ratio": ratio(h["clients"]["4"]["qps"], v["clients"]["4"]["qps"]),
    }
