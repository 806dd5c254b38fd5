"""Ingestion: scan a folder, load each file into text, chunk, embed and store it in the knowledge base."""
