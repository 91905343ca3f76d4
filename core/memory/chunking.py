"""Splitting long text into overlapping chunks, each embedded and indexed on its own."""

from __future__ import annotations


def chunk_text(text: str, *, size: int, overlap: int) -> list[str]:
    """Split ``text`` into chunks of at most ``size`` characters overlapping by ``overlap``.

    Cuts fall on whitespace when there is some in the second half of a window, so
    words are not split; text shorter than ``size`` is one chunk.

    Args:
        text: the text to split (leading/trailing whitespace is dropped).
        size: maximum characters per chunk.
        overlap: characters repeated at the start of the next chunk (< size).

    Returns:
        The chunks, in order; empty for blank text.
    """
    text = text.strip()
    if not text:
        return []
    if overlap >= size:
        raise ValueError("chunk overlap must be smaller than the chunk size")
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            if cut > start:
                end = cut
        chunks.append(text[start:end].strip())
        if end >= len(text):
            break
        # Step back by the overlap, to a word start when possible.
        nxt = max(end - overlap, start + 1)
        space = text.find(" ", nxt, end)
        start = space + 1 if overlap and space != -1 else nxt
    return [c for c in chunks if c]
