"""Storage: the SQL data model, vector indexes and the writer lock."""
