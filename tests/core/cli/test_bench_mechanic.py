"""The bench's lock sampler measures what it claims to."""

from __future__ import annotations

import time

from sqlalchemy import text

from core.bench.mechanic import LockSampler
from core.db import Database


def test_lock_sampler_sees_an_access_exclusive_hold(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE sampled (id int)"))
    sampler = LockSampler(db, "sampled")
    sampler.start()
    time.sleep(0.1)
    with db.engine.begin() as conn:
        conn.execute(text("LOCK TABLE sampled IN ACCESS EXCLUSIVE MODE"))
        time.sleep(0.3)
    time.sleep(0.1)
    sampler.stop.set()
    sampler.join(timeout=5)
    assert 0.25 <= sampler.longest <= 1.0
    assert sampler.samples > 10 and 0 < sampler.interval() < 0.2
