"""Retrieval: dense, keyword and hybrid search over the knowledge base."""
