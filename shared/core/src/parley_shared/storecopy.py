"""``parley store copy``: move a MongoDB deployment's state into PostgreSQL (docs/operations.md).

Each service says how its collections land in its tables (a :class:`CopyPlan` from the
``parley.store_copy`` entry-point group: routing, policy, onboarding with the vault, reports); this
module reads the source, writes the target and reports. A plan declares one :class:`Table` per
collection and table as data (the columns, how a document becomes its row: :func:`each`,
:func:`fields`, whether the collection is read at its newest version claims), and maps each
MongoDB document through its adapters' own document functions (``Conversation.from_document``,
``channel_from_doc``, the PostgreSQL adapters' encoders), so the copy has no second definition of
a document's shape.

- **Idempotent.** Every row is an upsert by its primary key that changes the row only when it
  differs (``IS DISTINCT FROM``); a versioned row (a conversation, a channel, a team, an
  onboarding, a report document) is never replaced by an older version. A second run writes
  nothing and says so.
- **Sealed secrets are copied sealed.** Ciphertexts are bound to the document's id, which the row
  keeps, so the same ``PARLEY_ENCRYPTION_KEYS`` decrypt them on PostgreSQL; nothing is decrypted.
- **One deployment per target.** A target whose tables hold rows that no earlier copy from this
  source wrote (``parley_store_copies`` records each copy) is refused unless ``--force``.
- **The services are stopped** while it runs: a service writing the source during the copy may
  leave the target behind (run it again), one writing the target is what ``--force`` is about.

Exit codes: 0 copied (or counted, ``--dry-run``), 1 failed, 2 usage, 3 refused (the target holds
another deployment's data), 4 ``--verify`` found differences.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, TextIO

from psycopg import sql
from pymongo.asynchronous.database import AsyncDatabase

from parley_shared.mongo import DEFAULT_DATABASE
from parley_shared.postgres import Migration, Pool, migrate
from parley_shared.progress import Progress
from parley_shared.settings import ServiceSettings
from parley_shared.store import Store, open_store, store_kind

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_DIFFERENT = 4

BATCH = 500
"""Rows written per statement batch (one transaction each)."""
SHOWN_DIFFERENCES = 20
"""Differences printed per table (all are counted)."""
DEFAULT_SAMPLE = 100
"""Rows per table ``--verify`` compares field by field (every row's presence is counted)."""

Row = tuple[Any, ...]
Document = dict[str, Any]
Documents = AsyncIterator[Row | None]
"""A table's reading of its collection: one item per source document, the row it becomes, or
None when the document is deliberately left out (expired, superseded: the plan says why)."""
Rows = Callable[[AsyncIterable[Document], datetime], Documents]
"""How a collection's documents become a table's rows, given the copy's time: :func:`each`,
:func:`each_dated` or :func:`whole` build one from a plain function of the documents."""


class CopyFailed(RuntimeError):
    """A document could not be read or mapped: which collection, and how far the copy got."""


@dataclass(frozen=True)
class Table:
    """How one MongoDB collection lands in one PostgreSQL table, declared as data: the engine
    reads the collection, maps its documents with ``rows`` and upserts the rows by ``key``."""

    collection: str
    key: tuple[str, ...]
    values: tuple[str, ...]
    """The columns written besides the key, in the order the rows give them after the key."""
    rows: Rows
    into: str = ""
    """The table, when it is not named as the collection is."""
    versioned: bool = False
    """The collection is saved by version claims (``parley_shared.mongo``) and the table has a
    ``version`` column: each document is read at its newest claimed version
    (:func:`newest_documents`), and an older version never replaces a newer row."""
    newest: bool = False
    """Read at the newest claimed version though the table has no version (a second table fed by
    a versioned collection)."""
    left_out: str = ""
    """Why some documents are not copied (shown in the summary), if any are."""
    label: str = ""
    """The name in the summary, when one collection feeds two tables (default: the collection)."""

    @property
    def table(self) -> str:
        return self.into or self.collection

    @property
    def name(self) -> str:
        return self.label or self.collection

    @property
    def counted(self) -> bool:
        """Whether each item read is one document of the collection (the progress total)."""
        return not self.label

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.key, *self.values)

    def read(self, db: AsyncDatabase[Document], now: datetime) -> Documents:
        """The rows of the source's documents (only reads the source)."""
        collection = db[self.collection]
        claimed = self.versioned or self.newest
        documents = newest_documents(collection) if claimed else collection.find({})
        return self.rows(documents, now)


def each_dated(row: Callable[[Document, datetime], Row | None]) -> Rows:
    """Each document mapped to its row on its own (None: left out), with the copy's time (to
    leave out what has expired)."""

    async def rows(documents: AsyncIterable[Document], now: datetime) -> Documents:
        async for doc in documents:
            yield row(doc, now)

    return rows


def each(row: Callable[[Document], Row | None]) -> Rows:
    """Each document mapped to its row on its own (None: left out)."""
    return each_dated(lambda doc, _now: row(doc))


def whole(rows: Callable[[list[Document], datetime], Sequence[Row | None]]) -> Rows:
    """The collection mapped at once, one item per document in the order read: for rows that
    count or choose among documents (a counter per window, the newest of several)."""

    async def mapped(documents: AsyncIterable[Document], now: datetime) -> Documents:
        for row in rows([doc async for doc in documents], now):
            yield row

    return mapped


def fields(*names: str) -> Callable[[Document], Row]:
    """The row of these fields of the document, as they are (a missing one fails the copy)."""

    def row(doc: Document) -> Row:
        return tuple(doc[name] for name in names)

    return row


@dataclass(frozen=True)
class CopyPlan:
    """A service's part of the copy: its migrations (the target's schema) and its tables."""

    service: str
    migrations: Sequence[Migration]
    tables: Sequence[Table]


@dataclass
class Tally:
    """What happened to one table's documents."""

    read: int = 0
    written: int = 0
    unchanged: int = 0
    left_out: int = 0
    newer: int = 0
    """Versioned rows the target holds at a later version than the source (kept as they are)."""
    before: int | None = None
    after: int | None = None
    differences: list[str] = field(default_factory=list)


def plans() -> list[CopyPlan]:
    """Every installed service's plan, in entry-point name order."""
    found = sorted(entry_points(group="parley.store_copy"), key=lambda ep: ep.name)
    return [ep.load()() for ep in found]


def source_identity(url: str) -> str:
    """What names a MongoDB deployment in the copy record: its hosts and database, never its
    credentials or options."""
    scheme, _, rest = url.partition("://")
    # the part before "/" is [user:password@]hosts; a "/" or "@" inside credentials is %-encoded
    authority, _, path = rest.split("?", 1)[0].partition("/")
    return f"{scheme.lower()}://{authority.rpartition('@')[2]}/{path or DEFAULT_DATABASE}"


def upsert_statement(table: Table) -> sql.Composed:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` that changes a row only if it differs (and, for a
    versioned table, only if the copied version is not older than the row's)."""
    columns = sql.SQL(", ").join(map(sql.Identifier, table.columns))
    values = sql.SQL(", ").join(sql.Placeholder() * len(table.columns))
    assignments = sql.SQL(", ").join(
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in table.values
    )
    mine = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in table.values)
    theirs = sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in table.values)
    condition = sql.SQL("ROW({mine}) IS DISTINCT FROM ROW({theirs})").format(mine=mine, theirs=theirs)
    if table.versioned:
        condition = sql.SQL("{} AND t.version <= EXCLUDED.version").format(condition)
    return sql.SQL(
        "INSERT INTO {table} AS t ({columns}) VALUES ({values})"
        " ON CONFLICT ({key}) DO UPDATE SET {assignments} WHERE {condition}"
    ).format(
        table=sql.Identifier(table.table),
        columns=columns,
        values=values,
        key=sql.SQL(", ").join(map(sql.Identifier, table.key)),
        assignments=assignments,
        condition=condition,
    )


def _same_row_statement(table: Table) -> sql.Composed:
    checks = sql.SQL(", ").join(
        sql.SQL("{} IS NOT DISTINCT FROM {}").format(sql.Identifier(c), sql.Placeholder())
        for c in table.columns
    )
    keys = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder()) for c in table.key
    )
    return sql.SQL("SELECT {checks} FROM {table} WHERE {keys}").format(
        checks=checks, table=sql.Identifier(table.table), keys=keys
    )


async def _count(pool: Pool, table: str) -> int | None:
    """Rows in a table, or None when the table does not exist (yet)."""
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        row = await cursor.fetchone()
        if row is None or not row[0]:
            return None
        cursor = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


_RECORD = (
    "CREATE TABLE IF NOT EXISTS parley_store_copies ("
    " source text PRIMARY KEY, first_at timestamptz NOT NULL, last_at timestamptz NOT NULL)"
)


async def _copied_from(pool: Pool) -> set[str]:
    """The sources earlier copies into this target came from."""
    if await _count(pool, "parley_store_copies") is None:
        return set()
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT source FROM parley_store_copies")
        return {row[0] for row in await cursor.fetchall()}


async def _record_copy(pool: Pool, source: str, at: datetime) -> None:
    async with pool.connection() as conn:
        await conn.execute(_RECORD)
        await conn.execute(
            "INSERT INTO parley_store_copies (source, first_at, last_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (source) DO UPDATE SET last_at = EXCLUDED.last_at",
            (source, at, at),
        )


async def _newer_in_target(pool: Pool, table: Table, rows: list[Row]) -> int:
    """How many of these versioned rows the target holds at a later version already."""
    if not rows or not table.versioned or await _count(pool, table.table) is None:
        return 0
    at = table.columns.index("version")
    async with pool.connection() as conn:
        cursor = await conn.execute(
            sql.SQL(
                "SELECT count(*) FROM {} AS t JOIN unnest(%s::text[], %s::bigint[]) AS s(id, version)"
                " ON t.id = s.id WHERE t.version > s.version"
            ).format(sql.Identifier(table.table)),
            ([r[0] for r in rows], [r[at] for r in rows]),
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _write(pool: Pool, statement: sql.Composed, rows: list[Row]) -> int:
    if not rows:
        return 0
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
        await cursor.executemany(statement, rows)
        return max(cursor.rowcount, 0)


@dataclass
class CopyOptions:
    """What the operator asked for."""

    dry_run: bool = False
    verify: bool = False
    force: bool = False
    sample: int = DEFAULT_SAMPLE


@dataclass
class CopyReport:
    """The outcome of a copy, table by table (``service.collection`` -> its tally)."""

    tallies: dict[str, Tally]
    tables: dict[str, Table]
    refused: str | None = None

    @property
    def written(self) -> int:
        return sum(t.written for t in self.tallies.values())

    @property
    def differences(self) -> int:
        return sum(len(t.differences) for t in self.tallies.values())


class Copier:
    """Copies every plan's tables from an open MongoDB store into an open PostgreSQL store."""

    def __init__(
        self,
        source: Store,
        target: Store,
        copy_plans: Sequence[CopyPlan],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source
        self.target = target
        self.plans = copy_plans
        self.now = now
        self.tables = {f"{p.service}.{t.name}": t for p in copy_plans for t in p.tables}

    async def run(self, options: CopyOptions) -> CopyReport:
        pool, db = self.target.postgres, self.source.db
        report = CopyReport({name: Tally() for name in self.tables}, self.tables)
        for name, table in self.tables.items():
            report.tallies[name].before = await _count(pool, table.table)
        source = source_identity(self.source.url)
        held = sum(
            before or 0
            for before in {t.table: report.tallies[n].before for n, t in self.tables.items()}.values()
        )
        if held and source not in await _copied_from(pool) and not options.force:
            report.refused = (
                f"the target holds {held} row(s) that no copy from {source} wrote (another deployment,"
                " or services already running on it); --force copies anyway"
            )
            return report
        now = self.now()
        if not options.dry_run:
            for plan in self.plans:
                await migrate(pool, plan.migrations)
            await _record_copy(pool, source, now)  # before the rows: an interrupted copy may go on
        total = sum([await db[t.collection].count_documents({}) for t in self.tables.values() if t.counted])
        with Progress("copy", total=total, unit="documents") as progress:
            for name, table in self.tables.items():
                await self._copy(table, report.tallies[name], now, options.dry_run, progress.advance)
        if not options.dry_run:
            await _record_copy(pool, source, self.now())
            for name, table in self.tables.items():
                report.tallies[name].after = await _count(pool, table.table)
        if options.verify:  # with --dry-run: the target as it is, compared with the source
            for name, table in self.tables.items():
                await self._verify(table, report.tallies[name], now, options.sample)
        return report

    async def _copy(
        self, table: Table, tally: Tally, now: datetime, dry_run: bool, advance: Callable[[int], None]
    ) -> None:
        statement = upsert_statement(table)
        batch: list[Row] = []
        rows = table.read(self.source.db, now)
        while True:
            try:
                row = await anext(rows)
            except StopAsyncIteration:
                break
            except Exception as exc:
                where = f"{table.collection} -> {table.table}, after {tally.read} document(s)"
                raise CopyFailed(f"{where}: {type(exc).__name__}: {exc}") from exc
            tally.read += 1
            if table.counted:
                advance(1)
            if row is None:
                tally.left_out += 1
                continue
            batch.append(row)
            if len(batch) >= BATCH:
                await self._write(table, statement, batch, tally, dry_run)
                batch = []
        await self._write(table, statement, batch, tally, dry_run)
        tally.unchanged = 0 if dry_run else tally.read - tally.left_out - tally.written

    async def _write(
        self, table: Table, statement: sql.Composed, batch: list[Row], tally: Tally, dry_run: bool
    ) -> None:
        tally.newer += await _newer_in_target(self.target.postgres, table, batch)
        if not dry_run:
            tally.written += await _write(self.target.postgres, statement, batch)

    async def _verify(self, table: Table, tally: Tally, now: datetime, sample: int) -> None:
        """Every copied key is in the target (counted), and a sample of rows equals the source's."""
        keys: set[Row] = set()
        chosen: list[Row] = []
        seen = 0
        async for row in table.read(self.source.db, now):
            if row is None:
                continue
            keys.add(row[: len(table.key)])
            seen += 1
            if len(chosen) < sample:
                chosen.append(row)
            elif (slot := random.randrange(seen)) < sample:  # noqa: S311 (a sample, not a secret)
                chosen[slot] = row
        if await _count(self.target.postgres, table.table) is None:
            tally.differences.extend(f"missing {table.table} {_shown(key)}" for key in sorted(keys, key=str))
            return
        statement = _same_row_statement(table)
        async with self.target.postgres.connection() as conn:
            key_list = sql.SQL(", ").join(map(sql.Identifier, table.key))
            cursor = await conn.execute(
                sql.SQL("SELECT {} FROM {}").format(key_list, sql.Identifier(table.table))
            )
            present = {tuple(r) for r in await cursor.fetchall()}
            for key in sorted(keys - present, key=str):
                tally.differences.append(f"missing {table.table} {_shown(key)}")
            for row in chosen:
                cursor = await conn.execute(statement, (*row, *row[: len(table.key)]))
                found = await cursor.fetchone()
                if found is None:
                    continue  # counted as missing above
                if table.versioned and not found[table.columns.index("version")]:
                    cursor = await conn.execute(
                        sql.SQL("SELECT version FROM {} WHERE id = %s").format(sql.Identifier(table.table)),
                        (row[0],),
                    )
                    held = await cursor.fetchone()
                    if held is not None and held[0] > row[table.columns.index("version")]:
                        continue  # a later version written on PostgreSQL: kept, and said so
                for column, same in zip(table.columns, found, strict=True):
                    if not same:
                        tally.differences.append(
                            f"{table.table} {_shown(row[: len(table.key)])}: {column} differs"
                        )


def _shown(key: Row) -> str:
    return "/".join(str(part) for part in key)


def print_report(report: CopyReport, options: CopyOptions, out: TextIO) -> None:
    """The closing summary: per collection, read, written, unchanged and left out, with the target's
    rows before and after."""
    header = "would copy" if options.dry_run else "copied"
    labels = {name: f"{name} -> {report.tables[name].table}" for name in report.tallies}
    width = max([len("collection -> table"), *map(len, labels.values())]) + 2
    print(
        f"{'collection -> table':<{width}}{'read':>9}{'written':>9}{'unchanged':>11}{'left out':>10}"
        f"{'before':>9}{'after':>9}",
        file=out,
    )
    for name, tally in report.tallies.items():
        written = "-" if options.dry_run else str(tally.written)
        unchanged = "-" if options.dry_run else str(tally.unchanged)
        before = "-" if tally.before is None else str(tally.before)
        after = "-" if tally.after is None else str(tally.after)
        print(
            f"{labels[name]:<{width}}{tally.read:>9}{written:>9}{unchanged:>11}{tally.left_out:>10}{before:>9}{after:>9}",
            file=out,
        )
    reasons = {report.tables[n].left_out for n, t in report.tallies.items() if t.left_out}
    for reason in sorted(reasons):
        print(f"left out: {reason}", file=out)
    newer = sum(t.newer for t in report.tallies.values())
    if newer:
        print(
            f"kept: {newer} row(s) the target holds at a later version than the source (a service"
            " wrote them on PostgreSQL: the copy never takes a version back)",
            file=out,
        )
    read = sum(t.read for t in report.tallies.values())
    if options.dry_run:
        print(f"{header}: {read} document(s) read, nothing written (--dry-run)", file=out)
    elif report.written == 0:
        print(f"{header}: {read} document(s) read, nothing changed: the target already held them", file=out)
    else:
        print(f"{header}: {read} document(s) read, {report.written} row(s) written", file=out)
    if options.verify:
        for tally in report.tallies.values():
            for difference in tally.differences[:SHOWN_DIFFERENCES]:
                print(f"difference: {difference}", file=out)
            if len(tally.differences) > SHOWN_DIFFERENCES:
                print(f"difference: ... and {len(tally.differences) - SHOWN_DIFFERENCES} more", file=out)
        print(f"verify: {report.differences} difference(s)", file=out)


async def copy_store(source_url: str, target_url: str, options: CopyOptions, out: TextIO) -> int:
    """Open both stores, copy, print the summary; the exit code."""
    source = await open_store(source_url)
    try:
        target = await open_store(target_url, max_connections=2)
    except BaseException:
        await source.close()
        raise
    if not options.dry_run:
        print(
            "parley store copy: the services writing the store (routing, policy, onboarding, reports)"
            " must be stopped while it runs (docs/operations.md)",
            file=sys.stderr,
        )
    try:
        report = await Copier(source, target, plans()).run(options)
    finally:
        await target.close()
        await source.close()
    if report.refused is not None:
        print(f"refused: {report.refused}", file=out)
        return EXIT_REFUSED
    print_report(report, options, out)
    if options.verify and report.differences:
        return EXIT_DIFFERENT
    return EXIT_OK


def _copy_command(_settings: ServiceSettings, args: argparse.Namespace) -> int:
    if store_kind(args.source) != "mongodb" or store_kind(args.target) != "postgresql":
        print("parley store copy: --from takes a mongodb:// URL, --to a postgresql:// URL", file=sys.stderr)
        return EXIT_USAGE
    options = CopyOptions(dry_run=args.dry_run, verify=args.verify, force=args.force, sample=args.sample)
    return asyncio.run(copy_store(args.source, args.target, options, sys.stdout))


HELP = """Copy the state of a MongoDB deployment (routing, policy, onboarding with its sealed
credentials, reports) into PostgreSQL, each collection into its table. Stop routing, policy,
onboarding and reports first; then start them on the PostgreSQL URL with the same encryption keys
(docs/operations.md, "Moving a deployment from MongoDB to PostgreSQL").

Safe to run again: rows are upserted by key, a second run writes nothing, and a row written on
PostgreSQL at a later version is kept. A target holding rows no copy from this source wrote is
refused unless --force.

exit codes: 0 copied (or counted), 1 failed, 2 usage, 3 refused (--force), 4 --verify found
differences"""


def register(commands: Any) -> None:
    """Add ``parley store copy`` to the ops CLI."""
    store = commands.add_parser("store", help="the store (MongoDB, PostgreSQL)")
    actions = store.add_subparsers(dest="action", required=True)
    copy = actions.add_parser(
        "copy",
        help="copy a MongoDB deployment's state into PostgreSQL (stop the services first)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    copy.add_argument("--from", dest="source", required=True, help="mongodb://host:port/database")
    copy.add_argument("--to", dest="target", required=True, help="postgresql://user@host:port/database")
    copy.add_argument("--dry-run", action="store_true", help="read and count, write nothing")
    copy.add_argument(
        "--verify",
        action="store_true",
        help="after the copy, check every key and a sample of rows field by field"
        " (with --dry-run: check the target as it is, writing nothing)",
    )
    copy.add_argument(
        "--force", action="store_true", help="copy into a target holding rows no copy from this source wrote"
    )
    copy.add_argument("--sample", type=int, default=DEFAULT_SAMPLE, help="rows per table --verify compares")
    copy.set_defaults(run=_copy_command)


async def newest_documents(collection: Any) -> AsyncIterator[dict[str, Any]]:
    """Every document of a collection saved by version claims (``parley_shared.mongo``), at its
    newest claimed version: a projection behind its claims (a writer stopped in between) is read
    forward as the adapters' ``get`` does, without repairing the source; a claim whose document
    was never written yields that document. The source is only read."""
    commits = collection.database[f"{collection.name}_commits"]
    ids: set[Any] = set()
    async for doc in collection.find({}):
        ids.add(doc["_id"])
        yield await _rolled_forward(commits, doc["_id"], doc)
    async for claim in commits.find({"version": 1}, {"doc_id": 1}):
        if claim["doc_id"] not in ids:
            newest = await _rolled_forward(commits, claim["doc_id"], None)
            if newest is not None:
                yield newest


async def _rolled_forward(commits: Any, doc_id: Any, doc: dict[str, Any] | None) -> dict[str, Any]:
    version = 0 if doc is None else int(doc.get("version", 0))
    while (claim := await commits.find_one({"_id": f"{doc_id}:{version + 1}"})) is not None:
        version += 1
        if "doc" in claim:
            doc = claim["doc"]
    assert doc is not None, f"{doc_id}: claims without a document"
    return doc
