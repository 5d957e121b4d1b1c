"""Alembic migrations of callstream's schema: the only place the schema is defined.

``open_store`` runs them to head programmatically (store/sql.py, ``run_migrations``);
there is no alembic.ini. To write a new revision, copy the last file in ``versions/``,
bump ``revision``/``down_revision``, and mirror the change in store/sql.py's tables
(tests/store/test_migrations.py fails while the two differ).
"""
