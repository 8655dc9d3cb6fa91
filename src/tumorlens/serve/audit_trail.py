"""The audit trail: one row per prediction (request id, time, model version, image SHA-256,
result), never the pixels. SQLAlchemy, so any database URL works; SQLite by default.

A SQLite file deleted or replaced while the service runs: open connections keep writing to the
deleted inode, so every later row would be lost while the answers go out with 200. Before and
after each write the file's identity (device, inode) is compared with the one the connections
opened; on a change the pool is dropped, the database is opened (or created) again, the event is
logged, and rows whose commit may have reached the old inode are written again.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading

from sqlalchemy import JSON, DateTime, Float, Integer, String, create_engine, event, func, inspect, select, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

log = logging.getLogger("tumorlens.serve")


class AuditTrailError(RuntimeError):
    """The audit database cannot be opened or written."""


class _Base(DeclarativeBase):
    pass


class PredictionRecord(_Base):
    __tablename__ = "tumorlens_predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    endpoint: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[str] = mapped_column(String(80))
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    input_format: Mapped[str] = mapped_column(String(8))
    slice_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(24))
    predicted_class: Mapped[str | None] = mapped_column(String(64), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    probabilities: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    findings: Mapped[list | None] = mapped_column(JSON, nullable=True)  # warning codes only
    method: Mapped[str | None] = mapped_column(String(24), nullable=True)
    api_key_id: Mapped[str | None] = mapped_column(String(12), nullable=True)
    # monitoring (tumorlens.monitoring.features): numbers about the input and the answer, no pixels;
    # added after the first release, so older databases get the column on opening (add_missing_columns)
    features: Mapped[dict | None] = mapped_column(JSON(none_as_null=True), nullable=True)  # None: SQL NULL

    COLUMNS = ("request_id", "created_at", "endpoint", "model_version", "image_sha256", "input_format",
               "slice_index", "status", "predicted_class", "confidence", "probabilities", "findings", "method",
               "api_key_id", "features")

    def to_dict(self) -> dict:
        d = {c: getattr(self, c) for c in self.COLUMNS}
        created = self.created_at
        if created.tzinfo is None:  # SQLite drops the zone; rows are always written in UTC
            created = created.replace(tzinfo=dt.timezone.utc)
        d["created_at"] = created.isoformat()
        return d


class AuditTrail:
    def __init__(self, url: str):
        try:
            kwargs = {"connect_args": {"check_same_thread": False}} if url.startswith("sqlite") else {}
            self.engine = create_engine(url, **kwargs)
            if url.startswith("sqlite"):
                event.listen(self.engine, "connect", _sqlite_wal)
            _Base.metadata.create_all(self.engine)
            add_missing_columns(self.engine)
        except (ArgumentError, SQLAlchemyError, ImportError, ValueError) as exc:
            raise AuditTrailError(f"cannot open the audit database {_safe(url)}: {str(exc).splitlines()[0]}") from None
        self.url = _safe(url)
        database = self.engine.url.database if self.engine.url.get_backend_name() == "sqlite" else None
        self.path = database if database and database != ":memory:" and not database.startswith("file:") else None
        self._lock = threading.Lock()
        self._identity = self._file_identity()
        self.reopened = 0  # times the file was found deleted or replaced and opened again

    def _file_identity(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _file_changed(self) -> bool:
        return self.path is not None and self._file_identity() != self._identity

    def _reopen(self) -> None:
        """The file is gone or replaced: drop every pooled connection and open it again."""
        with self._lock:
            if not self._file_changed():
                return  # another thread has reopened it already
            missing = self._file_identity() is None
            self.engine.dispose()
            try:
                _Base.metadata.create_all(self.engine)
                add_missing_columns(self.engine)
            except SQLAlchemyError as exc:
                raise AuditTrailError(f"cannot re-create the audit database: {str(exc).splitlines()[0]}") from None
            self._identity = self._file_identity()
            self.reopened += 1
            log.error("the audit database %s was %s while the service ran; %s it and continue writing there",
                      self.url, "deleted" if missing else "replaced", "re-created" if missing else "re-opened")

    def _write(self, rows: list[dict], now: dt.datetime) -> None:
        with Session(self.engine) as session, session.begin():
            session.add_all(PredictionRecord(created_at=now, **row) for row in rows)

    def record(self, rows: list[dict]) -> None:
        """Write the rows, or raise AuditTrailError: a caller never gets an answer whose row is lost."""
        now = dt.datetime.now(dt.timezone.utc)
        try:
            if self._file_changed():
                self._reopen()
            self._write(rows, now)
            if self._file_changed():  # deleted during the commit: the rows may be in the old inode
                self._reopen()
                self._write(rows, now)
        except SQLAlchemyError as exc:
            raise AuditTrailError(f"cannot write the audit trail: {str(exc).splitlines()[0]}") from None

    def healthy(self) -> bool:
        """The database is reachable (and, for SQLite, its file is the one written to)."""
        if self._file_changed():
            try:
                self._reopen()
            except AuditTrailError:
                return False
        try:
            with self.engine.connect() as con:
                con.exec_driver_sql("SELECT 1")
        except SQLAlchemyError:
            return False
        return True

    def records(self, request_id: str | None = None, limit: int = 100) -> list[dict]:
        query = select(PredictionRecord).order_by(PredictionRecord.id.desc()).limit(limit)
        if request_id is not None:
            query = query.where(PredictionRecord.request_id == request_id)
        with Session(self.engine) as session:
            return [r.to_dict() for r in session.scalars(query)]

    def monitored(self, model_version: str, limit: int) -> tuple[list[dict], int]:
        """The latest `limit` rows of this model version that carry monitoring features, oldest first,
        and how many such rows other model versions have (a report keeps to one model)."""
        has = PredictionRecord.features.is_not(None)
        query = (select(PredictionRecord).where(has, PredictionRecord.model_version == model_version)
                 .order_by(PredictionRecord.id.desc()).limit(limit))
        others = select(func.count()).select_from(PredictionRecord).where(has, PredictionRecord.model_version != model_version)
        with Session(self.engine) as session:
            rows = [r.to_dict() for r in session.scalars(query)]
            return rows[::-1], int(session.scalar(others))

    def close(self) -> None:
        self.engine.dispose()


def add_missing_columns(engine) -> None:
    """Columns added to PredictionRecord since a database was created (all nullable), added to its table:
    a database written by an older tumorlens opens and keeps its rows (they read as None there).
    Written here because create_all only creates missing tables; a migration tool (Alembic) would be
    a second schema history to keep for what is, so far, one nullable column."""
    table = PredictionRecord.__table__
    present = {c["name"] for c in inspect(engine).get_columns(table.name)}
    missing = [c for c in table.columns if c.name not in present]
    if not missing:
        return
    with engine.begin() as con:
        for column in missing:
            kind = column.type.compile(dialect=engine.dialect)
            con.execute(text(f'ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}'))
    log.info("audit database: added column(s) %s to %s", ", ".join(c.name for c in missing), table.name)


def _sqlite_wal(dbapi_connection, _record) -> None:
    """Write-ahead log with synchronous=NORMAL: a commit no longer waits for an fsync of the
    whole database (measured on this busy machine: ~80 ms per row before), and a crash of the
    service loses nothing committed; only a power cut can lose the last moments of rows."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: say so without echoing it
        return "(unparsable URL)"
