#include "schema.hpp"

#include "pq.hpp"

#include <array>

namespace exportengine::adapters::pg_detail {
namespace {

// ---------------------------------------------------------------------------
// migrations[v] takes a schema from version v to v + 1; a new version
// appends a step and never edits an old one. Unqualified names go to the
// schema the connection's search_path names.

constexpr const char* schema_v1 = R"sql(
-- The hot table: every claim, heartbeat and completion updates a row.
-- fillfactor 70 leaves room on each page for the new row versions, so an
-- update that changes no indexed column stays on its page (HOT, no index
-- writes): that is every heartbeat, the most frequent write (it changes
-- lease_expires_at, row_count and updated_at, none of them indexed: the
-- indexes below key on them nowhere, on purpose). autovacuum runs after 2%
-- of the rows changed instead of 20%, so dead versions are reclaimed while
-- the table is busy, without sleeping between pages.
CREATE TABLE jobs (
    id               text    NOT NULL PRIMARY KEY,
    account_id       bigint  NOT NULL,
    type             text    NOT NULL,
    filter_json      text    NOT NULL,
    compression      text    NOT NULL,
    delimiter        integer NOT NULL,
    bom              boolean NOT NULL,
    metadata_json    text    NOT NULL DEFAULT '{}',
    status           text    NOT NULL
        CHECK (status IN ('queued', 'processing', 'available', 'expired', 'failed')),
    created_at       bigint  NOT NULL,
    updated_at       bigint  NOT NULL,
    completed_at     bigint,
    expires_at       bigint,
    attempt          integer NOT NULL DEFAULT 0,
    lease_owner      text    NOT NULL DEFAULT '',
    lease_token      bigint  NOT NULL DEFAULT 0,
    lease_expires_at bigint,
    row_count        bigint,
    file_size        bigint,
    checksum         text    NOT NULL DEFAULT '',
    file_key         text    NOT NULL DEFAULT '',
    error_code       text,
    error_message    text,
    version          bigint  NOT NULL DEFAULT 1,
    -- What makes a job expire must exist (expire_due relies on it).
    CHECK (status <> 'available' OR expires_at IS NOT NULL)
) WITH (fillfactor = 70,
        autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_analyze_scale_factor = 0.02,
        autovacuum_vacuum_cost_delay = 0);

-- list: the account's jobs, newest first.
CREATE INDEX jobs_by_account ON jobs (account_id, created_at DESC, id DESC);
-- claim: the account's oldest queued job (the claim's ORDER BY).
CREATE INDEX jobs_queued ON jobs (account_id, created_at, id) WHERE status = 'queued';
-- requeue_expired_leases: the running jobs (a few per worker), whose
-- lease ends it then compares (not a key: heartbeats stay HOT).
CREATE INDEX jobs_running ON jobs (id) WHERE status = 'processing';
-- expire_due, earliest expiry first.
CREATE INDEX jobs_expiring ON jobs (expires_at, id) WHERE status = 'available';
-- files_to_delete and prune (updated_at is no key: heartbeats stay HOT).
CREATE INDEX jobs_finished ON jobs (id) WHERE status IN ('expired', 'failed');

CREATE TABLE idempotency_keys (
    account_id   bigint NOT NULL,
    "key"        text   NOT NULL,
    request_hash text   NOT NULL,
    job_id       text   NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    created_at   bigint NOT NULL,
    PRIMARY KEY (account_id, "key")
);
CREATE INDEX idempotency_keys_by_created ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_by_job ON idempotency_keys (job_id);

-- Per account: jobs queued, running and in all, and whose turn it is. Kept
-- exact by the trigger below. A claim locks its account's row here (FOR
-- UPDATE SKIP LOCKED), which is what keeps the per-account limit across
-- processes while claims for other accounts go on in parallel. last_claim:
-- every claim stamps its account from claim_turns (served least recently
-- first); an account never served is stamped below every served one, in the
-- order it first queued something (account_first_seen).
CREATE SEQUENCE claim_turns;
CREATE SEQUENCE account_first_seen;
CREATE TABLE account_queue (
    account_id bigint NOT NULL PRIMARY KEY,
    queued     bigint NOT NULL DEFAULT 0,
    running    bigint NOT NULL DEFAULT 0,
    total      bigint NOT NULL DEFAULT 0,
    last_claim bigint NOT NULL
) WITH (fillfactor = 50,
        autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_vacuum_cost_delay = 0);
-- claim: the account ORDER BY.
CREATE INDEX account_queue_ready ON account_queue (running, last_claim, account_id) WHERE queued > 0;

CREATE FUNCTION jobs_count() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO account_queue AS a (account_id, queued, running, total, last_claim)
        VALUES (NEW.account_id, (NEW.status = 'queued')::int, (NEW.status = 'processing')::int, 1,
                nextval('account_first_seen') - 4611686018427387904)
        ON CONFLICT (account_id) DO UPDATE SET
            queued = a.queued + EXCLUDED.queued,
            running = a.running + EXCLUDED.running,
            total = a.total + 1;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE account_queue SET
            queued = queued - (OLD.status = 'queued')::int,
            running = running - (OLD.status = 'processing')::int,
            total = total - 1
        WHERE account_id = OLD.account_id;
    ELSIF OLD.status IN ('queued', 'processing') OR NEW.status IN ('queued', 'processing') THEN
        UPDATE account_queue SET
            queued = queued - (OLD.status = 'queued')::int + (NEW.status = 'queued')::int,
            running = running - (OLD.status = 'processing')::int + (NEW.status = 'processing')::int
        WHERE account_id = NEW.account_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_count();
CREATE TRIGGER jobs_count_status AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION jobs_count();
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_count();

-- Files superseded (job_store.hpp, "Superseded files"). No cascade:
-- deleting a job that still has one is an error, never a leak.
CREATE TABLE stale_files (
    job_id     text   NOT NULL REFERENCES jobs (id),
    stale_key  text   NOT NULL,
    retired_at bigint NOT NULL,
    PRIMARY KEY (job_id, stale_key)
);
)sql";

// Version 2: a claim's turn is stamped by the trigger, in the same update
// of the account's row that counts the claim (one row version instead of
// two per claim). Processes of version 1 still running stamp it once more
// themselves, which changes nothing.
constexpr const char* schema_v2 = R"sql(
CREATE OR REPLACE FUNCTION jobs_count() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO account_queue AS a (account_id, queued, running, total, last_claim)
        VALUES (NEW.account_id, (NEW.status = 'queued')::int, (NEW.status = 'processing')::int, 1,
                nextval('account_first_seen') - 4611686018427387904)
        ON CONFLICT (account_id) DO UPDATE SET
            queued = a.queued + EXCLUDED.queued,
            running = a.running + EXCLUDED.running,
            total = a.total + 1;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE account_queue SET
            queued = queued - (OLD.status = 'queued')::int,
            running = running - (OLD.status = 'processing')::int,
            total = total - 1
        WHERE account_id = OLD.account_id;
    ELSIF OLD.status = 'queued' AND NEW.status = 'processing' THEN
        -- A claim: counted, and the account's turn taken.
        UPDATE account_queue SET
            queued = queued - 1,
            running = running + 1,
            last_claim = nextval('claim_turns')
        WHERE account_id = NEW.account_id;
    ELSIF OLD.status IN ('queued', 'processing') OR NEW.status IN ('queued', 'processing') THEN
        UPDATE account_queue SET
            queued = queued - (OLD.status = 'queued')::int + (NEW.status = 'queued')::int,
            running = running - (OLD.status = 'processing')::int + (NEW.status = 'processing')::int
        WHERE account_id = NEW.account_id;
    END IF;
    RETURN NULL;
END
$$;
)sql";

constexpr std::array<const char*, 2> migrations{schema_v1, schema_v2};

} // namespace

int latest_schema_version() noexcept { return static_cast<int>(migrations.size()); }

void migrate(connection& c, const std::string& schema)
{
    const std::string quoted = c.quote_identifier(schema);
    c.exec("BEGIN");
    try {
        // Every opener of this schema queues here; the first migrates, the
        // others then find the version current. (Transaction-scoped: the
        // lock goes with the commit or rollback.)
        c.query("SELECT pg_advisory_xact_lock(hashtextextended('exportengine.schema:' || $1, 0))", schema);
        // The schema for this transaction's unqualified names (also where
        // the connection keeps no session state: a pooler's).
        c.query("SELECT set_config('search_path', $1, true)", quoted);
        c.exec(("CREATE SCHEMA IF NOT EXISTS " + quoted).c_str());
        c.exec(("CREATE TABLE IF NOT EXISTS " + quoted
                + ".schema_version (one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL)")
                   .c_str());
        const auto r = c.exec(("SELECT version FROM " + quoted + ".schema_version").c_str());
        int version = 0;
        if (r.rows() == 0)
            c.exec(("INSERT INTO " + quoted + ".schema_version (version) VALUES (0)").c_str());
        else
            version = static_cast<int>(r.int64(0, 0));
        if (version > latest_schema_version() || version < 0)
            throw newer_schema{version};
        for (int v = version; v < latest_schema_version(); ++v)
            c.exec(migrations[static_cast<std::size_t>(v)]);
        if (version != latest_schema_version())
            c.query(("UPDATE " + quoted + ".schema_version SET version = $1").c_str(), latest_schema_version());
        c.exec("COMMIT");
    } catch (...) {
        c.rollback_quietly();
        throw;
    }
}

} // namespace exportengine::adapters::pg_detail
