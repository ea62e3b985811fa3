"""Persistence: the SQLite file, the write-behind flusher, and start-up restore."""
from tracker.store.database import MEMORY, StoreError, open_database, schema_version
from tracker.store.service import PersistenceService
from tracker.store.sqlite import RestoreReport, SQLiteStore

__all__ = ["MEMORY", "StoreError", "open_database", "schema_version",
           "PersistenceService", "RestoreReport", "SQLiteStore"]
