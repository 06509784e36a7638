"""Versioned DDL of the ledger file, applied in order on open.

A file whose newest migration is above :data:`LATEST` was written by a newer
Learnright and is refused. Tables are append-only: no code path updates or deletes.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from json.encoder import ESCAPE_DCT
from pathlib import Path
from typing import Callable

import duckdb

import ground
from ledger.core.license_file import read_document
from ledger.core.license_forms import FORM_VERSION, document_form
from ledger.errors import LedgerFileError, LedgerVersionError, LicenseFileError

FILE_ONLY = "-- file only"
"""First line of a migration that a lake skips (:func:`ledger.storage.lake.lake_dialect`): it
changes only what a ledger file stores, such as an index a lake never had."""

# Migration 15's macros: an entry's canonical bytes (format 3, ledger.core.chain.canonical)
# and digest in DuckDB SQL. Written out once here, as history: a later change is a new
# migration. Each JSON string is escaped by json.encoder's own table, as encode_basestring
# escapes it: '"' and '\' and the five named controls by name, every other character below
# 0x20 as \u00xx (lower-case hex: DuckDB's to_json writes upper case), nothing else.
# Backslashes are doubled first, so the escapes written after are not escaped again; each
# character replaced is one byte in UTF-8, never inside another character's bytes, so
# replace() on bytes is exact. An entry none of whose strings holds such a character (nearly
# every one) is checked by one regular expression over all its strings and written without
# escaping. An amount is the text Python's Decimal writes at scale 12: plain from 0.000001
# up, else as "1.23E-10" or "0E-12".
_NEEDS_ESCAPE = r"""'[\x00-\x1f"\\]'"""
_ESCAPED = "s"
for _char, _escape in sorted(ESCAPE_DCT.items(), key=lambda item: item[0] != "\\"):
    _found = f"chr({ord(_char)})" if _char < " " else f"'{_char}'"
    _ESCAPED = f"replace({_ESCAPED}, {_found}, '{_escape}')"
_ENTRY_COLUMNS = (  # chain.ENTRY_FIELDS in order, with how each is written
    ("stream", "text"), ("position", "int"), ("line", "int"), ("platform_id", "text"), ("event_id", "text"),
    ("kind", "text"), ("source_id", "text"), ("holder_id", "text"), ("model_id", "text"),
    ("license_id", "text"), ("license_version", "int"), ("quantity", "amount"), ("unit", "text"),
    ("rate", "amount"), ("per", "int"), ("currency", "text"), ("amount", "amount"), ("occurred_at", "time"),
    ("period", "text"), ("reverses_entry_key", "text"), ("description", "text"),
)
_PARAMETERS = ", ".join(f'"{name}"' for name, _ in _ENTRY_COLUMNS)


def _canonical_sql(text_macro: str) -> str:
    written = {"text": f"{text_macro}({{}})", "int": "entry_json_int({})", "amount": "entry_json_amount({})",
               "time": "entry_json_int(epoch_us({}))"}
    return "concat('[3,', " + ", ',', ".join(written[kind].format(f'"{name}"') for name, kind in _ENTRY_COLUMNS) + ", ']')"


_ENTRY_DIGEST_MACROS = f"""
    CREATE OR REPLACE MACRO entry_json_text(s) AS
        CASE WHEN s IS NULL THEN 'null'
             WHEN NOT regexp_matches(s, {_NEEDS_ESCAPE}) THEN '"' || s || '"'
             ELSE '"' || {_ESCAPED} || '"' END;
    CREATE OR REPLACE MACRO entry_json_plain(s) AS CASE WHEN s IS NULL THEN 'null' ELSE '"' || s || '"' END;
    CREATE OR REPLACE MACRO entry_json_tiny(digits) AS
        left(digits, 1) || CASE WHEN length(digits) > 1 THEN '.' || digits[2:] ELSE '' END
        || 'E-' || (13 - length(digits));
    CREATE OR REPLACE MACRO entry_json_amount(d) AS
        CASE WHEN d IS NULL THEN 'null'
             WHEN abs(d) >= 0.000001 THEN '"' || CAST(CAST(d AS DECIMAL(38, 12)) AS VARCHAR) || '"'
             ELSE '"' || CASE WHEN d < 0 THEN '-' ELSE '' END
                  || entry_json_tiny(coalesce(nullif(ltrim(replace(CAST(abs(CAST(d AS DECIMAL(38, 12))) AS VARCHAR),
                                                               '.', ''), '0'), ''), '0'))
                  || '"' END;
    CREATE OR REPLACE MACRO entry_json_int(i) AS coalesce(CAST(i AS VARCHAR), 'null');
    CREATE OR REPLACE MACRO entry_canonical({_PARAMETERS}) AS
        CASE WHEN regexp_matches(concat({", ".join(f'"{name}"' for name, kind in _ENTRY_COLUMNS if kind == "text")}),
                                 {_NEEDS_ESCAPE})
             THEN {_canonical_sql("entry_json_text")}
             ELSE {_canonical_sql("entry_json_plain")} END;
    CREATE OR REPLACE MACRO entry_digest({_PARAMETERS}) AS sha256(entry_canonical({_PARAMETERS}));"""

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE schema_migrations (
        version INTEGER PRIMARY KEY,
        applied_at TIMESTAMPTZ NOT NULL,
        app_version VARCHAR NOT NULL
    );
    CREATE TABLE license_documents (
        document_hash VARCHAR PRIMARY KEY,
        origin VARCHAR NOT NULL,
        body VARCHAR NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE license_versions (
        license_id VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        source_id VARCHAR NOT NULL,
        platform_id VARCHAR NOT NULL,
        effective_from TIMESTAMPTZ NOT NULL,
        currency VARCHAR NOT NULL,
        terms JSON NOT NULL,
        content_hash VARCHAR NOT NULL,
        document_hash VARCHAR NOT NULL,
        PRIMARY KEY (license_id, version)
    );
    CREATE TABLE ingest_batches (
        batch_id BIGINT PRIMARY KEY,
        committed_at TIMESTAMPTZ NOT NULL,
        events INTEGER NOT NULL,
        accruals INTEGER NOT NULL,
        quarantined INTEGER NOT NULL,
        duplicates INTEGER NOT NULL,
        chain_head VARCHAR NOT NULL
    );
    CREATE TABLE usage_events (
        platform_id VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        event_type VARCHAR NOT NULL,
        content_hash VARCHAR NOT NULL,
        model_id VARCHAR,
        occurred_at TIMESTAMPTZ NOT NULL,
        period VARCHAR NOT NULL,
        topic VARCHAR NOT NULL,
        kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL,
        batch_id BIGINT NOT NULL,
        PRIMARY KEY (platform_id, event_id)
    );
    CREATE TABLE accruals (
        entry_id BIGINT PRIMARY KEY,
        batch_id BIGINT NOT NULL,
        platform_id VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        line INTEGER NOT NULL,
        kind VARCHAR NOT NULL,
        source_id VARCHAR NOT NULL,
        holder_id VARCHAR NOT NULL,
        model_id VARCHAR NOT NULL,
        license_id VARCHAR NOT NULL,
        license_version INTEGER NOT NULL,
        quantity DECIMAL(38, 12) NOT NULL,
        unit VARCHAR NOT NULL,
        rate DECIMAL(38, 12) NOT NULL,
        per BIGINT NOT NULL,
        currency VARCHAR NOT NULL,
        amount DECIMAL(38, 12) NOT NULL,
        occurred_at TIMESTAMPTZ NOT NULL,
        period VARCHAR NOT NULL,
        reverses_entry_id BIGINT,
        entry_hash VARCHAR NOT NULL
    );
    CREATE TABLE revenue_reports (
        platform_id VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        model_id VARCHAR NOT NULL,
        period VARCHAR NOT NULL,
        revenue DECIMAL(38, 12) NOT NULL,
        currency VARCHAR NOT NULL,
        occurred_at TIMESTAMPTZ NOT NULL,
        batch_id BIGINT NOT NULL
    );
    CREATE TABLE consumer_offsets (
        batch_id BIGINT NOT NULL,
        topic VARCHAR NOT NULL,
        kafka_partition INTEGER NOT NULL,
        next_offset BIGINT NOT NULL
    );
    CREATE TABLE quarantine (
        quarantine_id BIGINT PRIMARY KEY,
        batch_id BIGINT NOT NULL,
        topic VARCHAR NOT NULL,
        kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL,
        record_key BLOB,
        record_value BLOB,
        headers JSON NOT NULL,
        error_class VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        platform_id VARCHAR,
        event_id VARCHAR,
        quarantined_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE period_closes (
        period VARCHAR PRIMARY KEY,
        closed_at TIMESTAMPTZ NOT NULL,
        last_entry_id BIGINT NOT NULL,
        chain_head VARCHAR NOT NULL,
        statements INTEGER NOT NULL
    );
    CREATE TABLE statements (
        statement_id VARCHAR PRIMARY KEY,
        period VARCHAR NOT NULL,
        holder_id VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        format_version INTEGER NOT NULL,
        accrued DECIMAL(38, 12) NOT NULL,
        carry_in DECIMAL(38, 12) NOT NULL,
        payable DECIMAL(38, 12) NOT NULL,
        carry_out DECIMAL(38, 12) NOT NULL,
        content_hash VARCHAR NOT NULL,
        document JSON NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    );
    """,
    # Period terms (tiers, minimums, pools, model royalties) computed at close.
    2: """
    ALTER TABLE accruals ADD COLUMN description VARCHAR;
    CREATE TABLE model_lineage (
        platform_id VARCHAR NOT NULL,
        model_id VARCHAR NOT NULL,
        base_model_id VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        occurred_at TIMESTAMPTZ NOT NULL,
        batch_id BIGINT NOT NULL
    );
    CREATE TABLE revenue_settlements (
        platform_id VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        close_period VARCHAR NOT NULL,
        PRIMARY KEY (platform_id, event_id)
    );
    """,
    # Signed statements and the outbox of their StatementClosed events: a statement without
    # a publication row is still to be published.
    3: """
    ALTER TABLE statements ADD COLUMN signature VARCHAR;
    ALTER TABLE statements ADD COLUMN key_fingerprint VARCHAR;
    CREATE TABLE statement_publications (
        statement_id VARCHAR NOT NULL,
        topic VARCHAR NOT NULL,
        kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL,
        published_at TIMESTAMPTZ NOT NULL
    );
    """,
    # API tokens (hashes only; revocation and expiry are appended, never updated) and the
    # documented views for auditors (docs/api.md).
    4: """
    CREATE TABLE api_tokens (
        token_id VARCHAR PRIMARY KEY,
        secret_sha256 VARCHAR NOT NULL UNIQUE,
        role VARCHAR NOT NULL,
        holder_id VARCHAR,
        label VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE api_token_changes (
        token_id VARCHAR NOT NULL,
        change VARCHAR NOT NULL,
        effective_at TIMESTAMPTZ NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL
    );
    CREATE VIEW audit_ledger AS
        SELECT entry_id, batch_id, period, occurred_at, kind, holder_id, source_id, platform_id, model_id,
               event_id, line, license_id, license_version, quantity, unit, rate, per, currency, amount,
               reverses_entry_id, description, entry_hash
        FROM accruals;
    CREATE VIEW audit_accruals AS
        SELECT period, holder_id, currency, source_id, kind, count(*) AS entries, sum(amount) AS amount
        FROM accruals GROUP BY ALL;
    CREATE VIEW audit_statement_lines AS
        SELECT s.statement_id, s.period AS statement_period, s.holder_id, s.currency,
               l.value ->> 'period' AS period, l.value ->> 'source_id' AS source_id,
               l.value ->> 'platform_id' AS platform_id, l.value ->> 'model_id' AS model_id,
               l.value ->> 'kind' AS kind, l.value ->> 'unit' AS unit,
               CAST(l.value ->> 'quantity' AS DECIMAL(38, 12)) AS quantity,
               CAST(l.value ->> 'amount' AS DECIMAL(38, 12)) AS amount,
               CAST(l.value ->> 'entries' AS BIGINT) AS entries, l.value ->> 'license' AS license,
               l.value ->> 'description' AS description
        FROM statements s, json_each(s.document, '$.lines') l;
    CREATE VIEW audit_reconciliation AS
        WITH closes AS (
            SELECT period, last_entry_id,
                   coalesce(lag(last_entry_id) OVER (ORDER BY period), 0) AS previous_entry_id
            FROM period_closes
        ), covered AS (
            SELECT c.period, a.holder_id, a.currency, sum(a.amount) AS ledger_amount, count(*) AS entries
            FROM closes c JOIN accruals a
              ON a.entry_id <= c.last_entry_id
             AND (a.period = c.period OR (a.period < c.period AND a.entry_id > c.previous_entry_id))
            GROUP BY ALL
        ), lines AS (
            SELECT statement_id, sum(amount) AS lines_amount FROM audit_statement_lines GROUP BY ALL
        )
        SELECT coalesce(s.period, v.period) AS period, coalesce(s.holder_id, v.holder_id) AS holder_id,
               coalesce(s.currency, v.currency) AS currency, s.statement_id,
               s.accrued AS statement_accrued, coalesce(l.lines_amount, 0) AS lines_amount,
               coalesce(v.ledger_amount, 0) AS ledger_amount, coalesce(v.entries, 0) AS ledger_entries,
               s.carry_in, s.payable, s.carry_out,
               s.statement_id IS NOT NULL
                 AND s.accrued = coalesce(v.ledger_amount, 0)
                 AND s.accrued = coalesce(l.lines_amount, 0)
                 AND s.payable + s.carry_out = s.accrued + s.carry_in AS balanced
        FROM statements s
        FULL OUTER JOIN covered v ON v.period = s.period AND v.holder_id = s.holder_id AND v.currency = s.currency
        LEFT JOIN lines l ON l.statement_id = s.statement_id;
    """,
    # Stable error codes in quarantine (ground.errors): what replay and counts match on.
    # Rows stored before keep error_code NULL and are read through CODES_BEFORE_5.
    5: """
    ALTER TABLE quarantine ADD COLUMN error_code VARCHAR;
    """,
    # The Kafka record's timestamp (ms since 1970) of a quarantined record: a replay bounds
    # occurred_at by it, as ingestion did. Rows stored before keep NULL and are read with
    # their quarantine time (ledger.storage.quarantine).
    6: """
    ALTER TABLE quarantine ADD COLUMN record_timestamp BIGINT;
    """,
    # Entry format 3 (ledger.core.chain): identity from the log and commitments per close.
    # Entries keep entry_id as this file's local row number (the booking order, which
    # differs between two ledgers built from one log); stream, position and line are the
    # entry's identity, and entry_hash is its own digest. Entries stored before keep
    # stream NULL and verify in the format-2 global chain. A close records its cut-off
    # (next offset per partition), the license book it used, each stream's head and its
    # root; closes stored before keep root NULL. A license document records the offsets
    # the ledger had booked when it was applied, so a rebuild applies it at the same place.
    7: """
    ALTER TABLE accruals ADD COLUMN stream VARCHAR;
    ALTER TABLE accruals ADD COLUMN position BIGINT;
    ALTER TABLE accruals ADD COLUMN reverses_entry_key VARCHAR;
    ALTER TABLE period_closes ADD COLUMN root VARCHAR;
    ALTER TABLE period_closes ADD COLUMN book_hash VARCHAR;
    ALTER TABLE license_documents ADD COLUMN booked_offsets JSON;
    CREATE TABLE close_cutoffs (
        period VARCHAR NOT NULL,
        topic VARCHAR NOT NULL,
        kafka_partition INTEGER NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (period, topic, kafka_partition)
    );
    CREATE TABLE close_streams (
        period VARCHAR NOT NULL,
        stream VARCHAR NOT NULL,
        entries BIGINT NOT NULL,
        head VARCHAR NOT NULL,
        PRIMARY KEY (period, stream)
    );
    CREATE OR REPLACE VIEW audit_ledger AS
        SELECT entry_id, batch_id, period, occurred_at, kind, holder_id, source_id, platform_id, model_id,
               event_id, line, license_id, license_version, quantity, unit, rate, per, currency, amount,
               reverses_entry_id, description, entry_hash, stream, position,
               CASE WHEN stream IS NULL THEN NULL ELSE stream || '@' || position || '#' || line END AS entry_key,
               reverses_entry_key
        FROM accruals;
    """,
    # Unlicensed use (ledger.core.unlicensed): uses of a source whose license ended or was
    # revoked, booked with their record's identity in the batch's transaction, never priced.
    # Revocations themselves are license documents (license_documents), so the book hash
    # every close commits to covers them. A platform token (scope "platform") has its platform in
    # api_token_platforms (a token table: never in a snapshot).
    8: """
    CREATE TABLE unlicensed_use (
        stream VARCHAR NOT NULL,
        position BIGINT NOT NULL,
        line INTEGER NOT NULL,
        topic VARCHAR NOT NULL,
        kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL,
        batch_id BIGINT NOT NULL,
        platform_id VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        source_id VARCHAR NOT NULL,
        holder_id VARCHAR NOT NULL,
        model_id VARCHAR NOT NULL,
        quantity DECIMAL(38, 12) NOT NULL,
        unit VARCHAR NOT NULL,
        occurred_at TIMESTAMPTZ NOT NULL,
        period VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        license_id VARCHAR NOT NULL,
        license_version INTEGER NOT NULL,
        currency VARCHAR NOT NULL,
        revocation_id VARCHAR NOT NULL,
        PRIMARY KEY (stream, position, line)
    );
    CREATE TABLE api_token_platforms (
        token_id VARCHAR PRIMARY KEY,
        platform_id VARCHAR NOT NULL
    );
    """,
    # Collectives (issue 16): members, distribution rule versions, each close's distributions and
    # the members' signed distribution statements; auditor views over them. Needs nothing of 8.
    9: """
    CREATE TABLE collective_members (
        collective_id VARCHAR NOT NULL,
        member_id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        payout_minimum JSON NOT NULL,
        document_hash VARCHAR NOT NULL,
        PRIMARY KEY (collective_id, member_id)
    );
    CREATE TABLE distribution_rules (
        collective_id VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        effective_from TIMESTAMPTZ NOT NULL,
        terms JSON NOT NULL,
        content_hash VARCHAR NOT NULL,
        document_hash VARCHAR NOT NULL,
        PRIMARY KEY (collective_id, version)
    );
    CREATE TABLE collective_distributions (
        period VARCHAR NOT NULL,
        collective_id VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        statement_id VARCHAR NOT NULL,
        accrued DECIMAL(38, 12) NOT NULL,
        management_fee DECIMAL(38, 12) NOT NULL,
        fee_cap DECIMAL(38, 12),
        deductions DECIMAL(38, 12) NOT NULL,
        undistributed DECIMAL(38, 12) NOT NULL,
        rule_versions VARCHAR NOT NULL,
        PRIMARY KEY (period, collective_id, currency)
    );
    CREATE TABLE member_statements (
        statement_id VARCHAR PRIMARY KEY,
        period VARCHAR NOT NULL,
        collective_id VARCHAR NOT NULL,
        member_id VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        format_version INTEGER NOT NULL,
        attributed DECIMAL(38, 12) NOT NULL,
        management_fee DECIMAL(38, 12) NOT NULL,
        deductions DECIMAL(38, 12) NOT NULL,
        net DECIMAL(38, 12) NOT NULL,
        carry_in DECIMAL(38, 12) NOT NULL,
        payable DECIMAL(38, 12) NOT NULL,
        carry_out DECIMAL(38, 12) NOT NULL,
        collective_statement_id VARCHAR NOT NULL,
        collective_content_hash VARCHAR NOT NULL,
        content_hash VARCHAR NOT NULL,
        document JSON NOT NULL,
        signature VARCHAR NOT NULL,
        key_fingerprint VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE VIEW audit_collective_members AS
        SELECT collective_id, member_id, name, payout_minimum FROM collective_members;
    CREATE VIEW audit_distribution_rules AS
        SELECT collective_id, version, effective_from, terms->'$.sources' AS sources, terms->'$.pools' AS pools,
               terms->'$.management_fee' AS management_fee, terms->'$.deductions' AS deductions, content_hash
        FROM distribution_rules;
    CREATE VIEW audit_member_statements AS
        SELECT statement_id, period, collective_id, member_id, currency, attributed, management_fee, deductions,
               net, carry_in, payable, carry_out, collective_statement_id, collective_content_hash, content_hash
        FROM member_statements;
    CREATE VIEW audit_distribution_reconciliation AS
        WITH members AS (
            SELECT period, collective_id, currency, sum(net) AS net FROM member_statements GROUP BY ALL
        )
        SELECT d.period, d.collective_id, d.currency, s.accrued AS collective_accrued,
               coalesce(m.net, 0) AS members_net, d.management_fee, d.fee_cap, d.deductions, d.undistributed,
               s.accrued - coalesce(m.net, 0) - d.management_fee - d.deductions - d.undistributed AS difference
        FROM collective_distributions d
        JOIN statements s ON s.statement_id = d.statement_id
        LEFT JOIN members m ON m.period = d.period AND m.collective_id = d.collective_id AND m.currency = d.currency;
    """,
    # 10: the lake snapshot a close read (NULL in a ledger file), for auditors' queries at a close.
    10: """
    ALTER TABLE period_closes ADD COLUMN lake_snapshot BIGINT;
    """,
    # 11 (issue 18, file only): accruals without the index of its primary key. Entry ids are
    # reserved by the one writer (ledger.storage.connection.ChainTip) and `learnright verify`
    # reports a gap or a repeat, so the ART index on entry_id only cost bytes (about 17 a
    # booked event, and the blocks each checkpoint frees rewriting it). The rows are copied
    # as they are, in booking order; the copy is refused unless its count and the sum of its
    # rows' hashes equal the original's. A lake never had the key (lake_dialect).
    11: f"""{FILE_ONLY}
    CREATE TABLE accruals_v11 (
        entry_id BIGINT NOT NULL,
        batch_id BIGINT NOT NULL,
        platform_id VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        line INTEGER NOT NULL,
        kind VARCHAR NOT NULL,
        source_id VARCHAR NOT NULL,
        holder_id VARCHAR NOT NULL,
        model_id VARCHAR NOT NULL,
        license_id VARCHAR NOT NULL,
        license_version INTEGER NOT NULL,
        quantity DECIMAL(38, 12) NOT NULL,
        unit VARCHAR NOT NULL,
        rate DECIMAL(38, 12) NOT NULL,
        per BIGINT NOT NULL,
        currency VARCHAR NOT NULL,
        amount DECIMAL(38, 12) NOT NULL,
        occurred_at TIMESTAMPTZ NOT NULL,
        period VARCHAR NOT NULL,
        reverses_entry_id BIGINT,
        entry_hash VARCHAR NOT NULL,
        description VARCHAR,
        stream VARCHAR,
        position BIGINT,
        reverses_entry_key VARCHAR
    );
    INSERT INTO accruals_v11 BY NAME SELECT * FROM accruals;
    SELECT error('migration 11: the copy of accruals differs from the original (' || o.n || ' rows, copy '
                 || c.n || '); nothing was changed')
    FROM (SELECT count(*) AS n, sum(hash(*COLUMNS(*))::HUGEINT) AS h FROM accruals) o,
         (SELECT count(*) AS n, sum(hash(*COLUMNS(*))::HUGEINT) AS h FROM accruals_v11) c
    WHERE o.n <> c.n OR o.h IS DISTINCT FROM c.h;
    DROP TABLE accruals;
    ALTER TABLE accruals_v11 RENAME TO accruals;
    """,
    # 12 (issue 18, file only): usage_events without its primary key (platform_id, event_id).
    # Its ART index took about 60 bytes a booked event in the file and about as much again in
    # the blocks each checkpoint freed rewriting it. The file's one writer refuses an event
    # booked twice itself (ledger.storage.event_filter: the events' 64-bit hashes in memory, a
    # hit confirmed against the table). Copied as migration 11 copies accruals: in order, and
    # refused unless count and the sum of the rows' hashes agree. A lake never had the key.
    12: f"""{FILE_ONLY}
    CREATE TABLE usage_events_v12 (
        platform_id VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        event_type VARCHAR NOT NULL,
        content_hash VARCHAR NOT NULL,
        model_id VARCHAR,
        occurred_at TIMESTAMPTZ NOT NULL,
        period VARCHAR NOT NULL,
        topic VARCHAR NOT NULL,
        kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL,
        batch_id BIGINT NOT NULL
    );
    INSERT INTO usage_events_v12 BY NAME SELECT * FROM usage_events;
    SELECT error('migration 12: the copy of usage_events differs from the original (' || o.n || ' rows, copy '
                 || c.n || '); nothing was changed')
    FROM (SELECT count(*) AS n, sum(hash(*COLUMNS(*))::HUGEINT) AS h FROM usage_events) o,
         (SELECT count(*) AS n, sum(hash(*COLUMNS(*))::HUGEINT) AS h FROM usage_events_v12) c
    WHERE o.n <> c.n OR o.h IS DISTINCT FROM c.h;
    DROP TABLE usage_events;
    ALTER TABLE usage_events_v12 RENAME TO usage_events;
    """,
    # 13 (issue 18): each license document's parsed form (ledger.core.license_forms: what
    # tomllib made of its text, as JSON), which a read of the book decodes instead of parsing
    # the TOML again. Derived data: the documents stay the record (and the book hash is of
    # them); a document without a form is parsed from its TOML. The forms of documents applied
    # before are written by the migration itself (BACKFILLS).
    13: """
    CREATE TABLE license_document_forms (
        document_hash VARCHAR PRIMARY KEY,
        form_version INTEGER NOT NULL,
        parsed VARCHAR NOT NULL
    );
    """,
    # 14 (issue 18): entries booked from now on store no digest (entry_hash NULL). An entry's
    # digest (format 3) is a pure function of its own stored fields, so a copy beside the row
    # proved nothing the row does not: whoever can edit the row can rewrite the copy. What
    # commits the ledger is each close's stream heads and root, which closes and verify fold
    # from digests computed from the fields (ledger.storage.entry_digests). The column was
    # about a third of the file (62 bytes a booked event, incompressible hex) and most of the
    # checkpoints' compression work. Rows stored before keep theirs (nothing is rewritten):
    # verify still compares them, and entries booked before schema 7 (format 2, no stream)
    # need theirs, the links of their global chain. DuckLake takes the same ALTER.
    14: """
    ALTER TABLE accruals ALTER COLUMN entry_hash DROP NOT NULL;
    """,
    # 15 (issue 18 follow-up): auditors' audit_ledger.entry_hash is every entry's digest
    # again, computed in SQL from the row where none is stored (entries booked since schema
    # 14): the macro entry_digest writes chain.canonical's bytes (format 3) and hashes them,
    # so an auditor checks an entry with SQL alone. Stored hashes (rows booked before schema
    # 14, format-2 chain links included) are shown as stored. Scripts with no ";" inside a
    # literal: the lake dialect splits on it.
    15: f"""
{_ENTRY_DIGEST_MACROS}
    CREATE OR REPLACE VIEW audit_ledger AS
        SELECT entry_id, batch_id, period, occurred_at, kind, holder_id, source_id, platform_id, model_id,
               event_id, line, license_id, license_version, quantity, unit, rate, per, currency, amount,
               reverses_entry_id, description,
               coalesce(entry_hash, entry_digest(stream, position, line, platform_id, event_id, kind, source_id,
                                                 holder_id, model_id, license_id, license_version, quantity, unit,
                                                 rate, per, currency, amount, occurred_at, period,
                                                 reverses_entry_key, description)) AS entry_hash,
               stream, position,
               CASE WHEN stream IS NULL THEN NULL ELSE stream || '@' || position || '#' || line END AS entry_key,
               reverses_entry_key
        FROM accruals;
    """,
    # 16 (issue 18, file only): signed documents stored with zstd where the file's storage format
    # has it (DuckDB's v1.2.0 and later: every file created since ledger.storage.connection's
    # STORAGE_VERSION). DuckDB stores strings this long uncompressed in v1.0.0, so 100,000
    # statements (908 MB of JSON) made 934 MB of file; zstd keeps about a ninth. The tables are
    # rebuilt in Python (BACKFILLS: only a newer format allows the column's compression), and a file
    # of the older format keeps its tables as they are.
    16: f"""{FILE_ONLY}
    SELECT 16 AS documents_compressed_where_the_format_allows;
    """,
}

LATEST = max(MIGRATIONS)


def _license_document_forms(con: duckdb.DuckDBPyConnection) -> None:
    """Migration 13's rows: the parsed form of every license document applied before it.

    A document whose text does not parse (it did when it was applied) gets no form: reading
    the book parses its TOML and says what is wrong, as before the migration.
    """
    hashes = con.execute("SELECT DISTINCT document_hash FROM license_documents ORDER BY ALL").fetchall()
    for (document_hash,) in hashes:  # one at a time: a large book's text and form need not all be in memory
        origin, body = con.execute("SELECT origin, body FROM license_documents WHERE document_hash = ? LIMIT 1",
                                   [document_hash]).fetchone()
        try:
            form = document_form(read_document(body, origin))
        except LicenseFileError:
            form = None
        if form is not None:
            con.execute("INSERT INTO license_document_forms (document_hash, form_version, parsed) VALUES (?, ?, ?)",
                        [document_hash, FORM_VERSION, form])


DOCUMENT_TABLES = ("statements", "member_statements")
"""The tables whose ``document`` column holds signed statement documents."""

ZSTD_FROM = (1, 2, 0)
"""The first DuckDB storage format that compresses a column with zstd."""


def _storage_format(con: duckdb.DuckDBPyConnection) -> tuple[int, ...]:
    """The DuckDB storage format of the file ``con`` writes (``v1.0.0+`` reads as (1, 0, 0)); (0, 0, 0) for
    a catalog that is not a DuckDB file (a lake)."""
    kind, tag = con.execute("SELECT type, tags['storage_version'] FROM duckdb_databases()"
                            " WHERE database_name = current_database()").fetchone()
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", tag or "") if kind == "duckdb" else None
    return tuple(int(part) for part in match.groups()) if match else (0, 0, 0)


def _compressed_documents(con: duckdb.DuckDBPyConnection) -> None:
    """Migration 16: each table of :data:`DOCUMENT_TABLES` rebuilt with its ``document`` column compressed
    with zstd, where the file's storage format has it (else nothing is changed).

    Copied as migrations 11 and 12 copy theirs: the rows in order, and refused unless the count and
    the sum of the rows' hashes equal the original's. A new file's tables are empty here.
    """
    if _storage_format(con) < ZSTD_FROM:
        return
    for table in DOCUMENT_TABLES:
        ddl = con.execute("SELECT sql FROM duckdb_tables() WHERE table_name = ? AND database_name = current_database()",
                          [table]).fetchone()[0]
        column = '"document" JSON NOT NULL'
        if ddl.count(column) != 1:
            raise LedgerFileError(f"migration 16: {table} has no column {column} to compress ({ddl})")
        copy = f"{table}_v16"
        con.execute(ddl.replace(f"CREATE TABLE {table}(", f"CREATE TABLE {copy}(", 1)
                    .replace(column, f"{column} USING COMPRESSION zstd"))
        con.execute(f"INSERT INTO {copy} BY NAME SELECT * FROM {table}")
        con.execute(f"""SELECT error('migration 16: the copy of {table} differs from the original (' || o.n || ' rows, copy '
                                     || c.n || '); nothing was changed')
                        FROM (SELECT count(*) AS n, sum(hash(*COLUMNS(*))::HUGEINT) AS h FROM {table}) o,
                             (SELECT count(*) AS n, sum(hash(*COLUMNS(*))::HUGEINT) AS h FROM {copy}) c
                        WHERE o.n <> c.n OR o.h IS DISTINCT FROM c.h""")
        con.execute(f"DROP TABLE {table}")
        con.execute(f"ALTER TABLE {copy} RENAME TO {table}")


BACKFILLS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {13: _license_document_forms,
                                                                     16: _compressed_documents}
"""Rows a migration writes in Python (from rows SQL cannot derive), in the transaction of its version row."""

CODES_BEFORE_5: dict[str, str] = {
    "DecodeError": "undecodable",
    "UnknownSchemaError": "unknown_schema",
    "ValidationError": "invalid_value",
    "ConflictError": "event_conflict",
    "PendingCorrectionError": "correction_pending",
    "CorrectionError": "correction_invalid",
    "PricingError": "unpriceable",
    "UnknownSourceError": "unknown_source",
    "NoLicenseError": "no_license",
}
"""The code of each error class batch building could quarantine before migration 5 stored codes.

History, not a lookup of today's classes: it stays right when a class is renamed or moved.
A class name not listed reads as ``internal``.
"""


def migrate(con: duckdb.DuckDBPyConnection, path: object, read_only: bool,
            dialect: Callable[[str], list[str]] = lambda ddl: [ddl]) -> None:
    """Applies every migration the ledger lacks, each in its own transaction, by number.

    ``path`` names the ledger in messages; ``dialect`` rewrites each migration's DDL for
    the storage as scripts run in order, each in its own transaction, the last with the
    version row (a lake's has no constraints and its tokens apart:
    :func:`ledger.storage.lake.lake_dialect`).

    Raises:
        LedgerVersionError: the file holds a version above LATEST (a newer Learnright wrote it).
        LedgerFileError: a read-only open of a file that needs migrating, or a migration
            failed (it was rolled back; the ones before it stay applied).
    """
    has_table = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        " AND table_catalog = current_database()"
    ).fetchall()[0][0]
    applied = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()} if has_table else set()
    current = max(applied, default=0)
    if current > LATEST:
        raise LedgerVersionError(
            f"ledger file {path} is at schema version {current}, written by a newer Learnright;"
            f" this one ({ground.__version__}) knows versions up to {LATEST}. Upgrade Learnright."
        )
    missing = sorted(set(MIGRATIONS) - applied)  # by number: a lower one merged later still applies
    if not missing:
        return
    if read_only:
        raise LedgerFileError(f"ledger file {path} lacks schema versions {missing} and needs migrating; open it for writing first")
    for version in missing:
        *first, last = dialect(MIGRATIONS[version])
        for script in first:
            _apply(con, path, version, script)
        _apply(con, path, version, last, record=True)


def _apply(con: duckdb.DuckDBPyConnection, path: object, version: int, script: str, record: bool = False) -> None:
    """Runs one script of migration ``version`` in a transaction of its own (with its :data:`BACKFILLS` rows and
    the version row when ``record``).

    Raises:
        LedgerFileError: the script failed (a rewrite's check refused its copy); it was rolled back.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(script)
        if record:
            if version in BACKFILLS:
                BACKFILLS[version](con)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        [version, datetime.now(timezone.utc), ground.__version__])
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise LedgerFileError(f"migration {version} of ledger {path} failed and was rolled back: {exc}") from exc
    except BaseException:
        con.execute("ROLLBACK")
        raise
