"""Vector memory: embeddings, indexing and search."""
