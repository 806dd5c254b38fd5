"""Answering: an extractive reader that reads retrieved passages and cites the answers it finds."""
