"""Ingestion: load files, split them into chunks, embed and store them incrementally."""
