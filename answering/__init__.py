"""Answering: the extractive reader (arrives with the reader issue)."""
