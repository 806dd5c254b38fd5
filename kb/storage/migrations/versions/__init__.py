"""The revisions, one per schema version (a package only so that the wheel ships them)."""
