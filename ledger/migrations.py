"""Versioned DDL of the ledger file, applied in order on open.

A file whose newest migration is above :data:`LATEST` was written by a newer
Learnright and is refused. Tables are append-only: no code path updates or deletes.
"""

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
}

LATEST = max(MIGRATIONS)
