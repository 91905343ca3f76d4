from __future__ import annotations

import itertools

import pytest

from core.memory.chunking import chunk_text


def test_short_text_is_one_chunk_and_blank_is_none() -> None:
    assert chunk_text("  hello world  ", size=100, overlap=10) == ["hello world"]
    assert chunk_text("   ", size=100, overlap=10) == []


def test_long_text_chunks_respect_size_overlap_and_word_boundaries() -> None:
    words = [f"w{i}" for i in range(400)]
    text = " ".join(words)
    chunks = chunk_text(text, size=200, overlap=50)
    assert len(chunks) > 5
    assert all(len(c) <= 200 for c in chunks)
    # No word is cut, every word survives, and consecutive chunks share words.
    assert all(set(c.split()) <= set(words) for c in chunks)
    assert {w for c in chunks for w in c.split()} == set(words)
    for a, b in itertools.pairwise(chunks):
        assert set(a.split()) & set(b.split())
    no_overlap = chunk_text(text, size=200, overlap=0)
    assert sum(len(c.split()) for c in no_overlap) == len(words)


def test_overlap_must_be_smaller_than_size() -> None:
    with pytest.raises(ValueError):
        chunk_text("x " * 300, size=100, overlap=100)
