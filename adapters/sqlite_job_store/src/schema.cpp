#include "schema.hpp"

#include "common.hpp"  // from_ms

#include <exportengine/time_format.hpp>

#include <SQLiteCpp/Statement.h>

#include <boost/json.hpp>

#include <array>
#include <cstddef>
#include <optional>
#include <string>

namespace exportengine::adapters::sqlite_store_detail {
namespace {

// ---------------------------------------------------------------------------
// Schema. migrations[v] takes a database from user_version v to v + 1; a new
// version appends a step and never edits an old one.

constexpr const char* schema_v1 = R"sql(
CREATE TABLE jobs (
    id               TEXT    NOT NULL PRIMARY KEY,
    account_id       INTEGER NOT NULL,
    type             TEXT    NOT NULL,
    filter_json      TEXT    NOT NULL,
    compression      TEXT    NOT NULL,
    delimiter        INTEGER NOT NULL,
    bom              INTEGER NOT NULL,
    filters_json     TEXT    NOT NULL,
    status           TEXT    NOT NULL
        CHECK (status IN ('queued', 'processing', 'available', 'expired', 'failed')),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER,
    expires_at       INTEGER,
    attempt          INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT    NOT NULL DEFAULT '',
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    row_count        INTEGER,
    file_size        INTEGER,
    checksum         TEXT    NOT NULL DEFAULT '',
    file_key         TEXT    NOT NULL DEFAULT '',
    error_code       TEXT,
    error_message    TEXT,
    -- What makes a job expire must exist (expire_due relies on it).
    CHECK (status <> 'available' OR expires_at IS NOT NULL)
);
CREATE INDEX jobs_by_account ON jobs (account_id, created_at DESC, id DESC);
CREATE INDEX jobs_by_status_account ON jobs (status, account_id, created_at, id);
CREATE INDEX jobs_by_status_expires ON jobs (status, expires_at);
CREATE INDEX jobs_by_status_lease ON jobs (status, lease_expires_at);
CREATE INDEX jobs_with_file ON jobs (status) WHERE file_key <> '';

CREATE TABLE idempotency_keys (
    account_id   INTEGER NOT NULL,
    "key"        TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    job_id       TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, "key")
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_created ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_by_job ON idempotency_keys (job_id);

-- Per account: jobs queued and running, and whose turn it is. Kept exact by
-- the triggers below on every insert, status change and delete of a job, so
-- a claim reads one row from an index instead of counting jobs. last_claim:
-- every claim stamps its account with the next number (served least recently
-- first); an account never served is stamped below every served one, in the
-- order accounts first queued something.
CREATE TABLE account_queue (
    account_id INTEGER NOT NULL PRIMARY KEY,
    queued     INTEGER NOT NULL,
    running    INTEGER NOT NULL,
    last_claim INTEGER NOT NULL
);
CREATE INDEX account_queue_ready ON account_queue (running, last_claim, account_id)
    WHERE queued > 0;
CREATE INDEX account_queue_turns ON account_queue (last_claim);

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO account_queue (account_id, queued, running, last_claim)
    VALUES (NEW.account_id, NEW.status = 'queued', NEW.status = 'processing',
            IFNULL((SELECT MAX(last_claim) FROM account_queue WHERE last_claim < 0),
                   -1000000000000000) + 1)
    ON CONFLICT (account_id) DO UPDATE SET
        queued = queued + (NEW.status = 'queued'),
        running = running + (NEW.status = 'processing');
END;
CREATE TRIGGER jobs_count_status AFTER UPDATE OF status ON jobs
WHEN OLD.status <> NEW.status BEGIN
    UPDATE account_queue SET
        queued = queued - (OLD.status = 'queued') + (NEW.status = 'queued'),
        running = running - (OLD.status = 'processing') + (NEW.status = 'processing')
    WHERE account_id = NEW.account_id;
END;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
    UPDATE account_queue SET
        queued = queued - (OLD.status = 'queued'),
        running = running - (OLD.status = 'processing')
    WHERE account_id = OLD.account_id;
END;

-- Files a regeneration (or a completion under a new key) superseded. No
-- cascade: deleting a job that still has one is an error, never a leak.
CREATE TABLE stale_files (
    job_id     TEXT    NOT NULL REFERENCES jobs (id),
    stale_key  TEXT    NOT NULL,
    retired_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, stale_key)
) WITHOUT ROWID;
)sql";

// v2: each account's number of jobs, kept by the same triggers, so the
// list's `total` is one row read instead of a count over the account's jobs
// (at 10,000 jobs the count was most of a list request's time).
constexpr const char* schema_v2 = R"sql(
ALTER TABLE account_queue ADD COLUMN total INTEGER NOT NULL DEFAULT 0;
UPDATE account_queue SET total =
    (SELECT COUNT(*) FROM jobs WHERE jobs.account_id = account_queue.account_id);
DROP TRIGGER jobs_count_insert;
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO account_queue (account_id, queued, running, last_claim, total)
    VALUES (NEW.account_id, NEW.status = 'queued', NEW.status = 'processing',
            IFNULL((SELECT MAX(last_claim) FROM account_queue WHERE last_claim < 0),
                   -1000000000000000) + 1, 1)
    ON CONFLICT (account_id) DO UPDATE SET
        queued = queued + (NEW.status = 'queued'),
        running = running + (NEW.status = 'processing'),
        total = total + 1;
END;
DROP TRIGGER jobs_count_delete;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
    UPDATE account_queue SET
        queued = queued - (OLD.status = 'queued'),
        running = running - (OLD.status = 'processing'),
        total = total - 1
    WHERE account_id = OLD.account_id;
END;
)sql";

// v3: each job's version (export_job::version): 1 for the jobs already
// there, incremented by every write that changes a job.
constexpr const char* schema_v3 = R"sql(
ALTER TABLE jobs ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
)sql";

// v4: the views' `filters` are built from the typed filter (filter_json),
// which now keeps a range's ends as the user wrote them ("startText",
// "endText"; see job_codec.cpp). The copy of the scope as sent
// (filters_json) goes: its date-time strings move into filter_json first,
// so the views of the jobs already there do not change. And each job's
// host metadata (export_request::metadata), a JSON object of strings, `{}`
// for none.
constexpr const char* schema_v4 = R"sql(
ALTER TABLE jobs DROP COLUMN filters_json;
ALTER TABLE jobs ADD COLUMN metadata_json TEXT NOT NULL DEFAULT '{}';
)sql";

/// For one job: filter_json with the date-time strings of filters_json
/// (the scope as the user sent it) added where they spell the filter's
/// instants, or nullopt when there is nothing to add. A filters_json that
/// is not what the API wrote (not JSON, no strings) adds nothing: the view
/// then shows the instants in UTC. A filter_json that cannot be read is
/// left as it is (reading that job fails, as it did before).
std::optional<std::string> with_range_texts(const std::string& filter_json, const std::string& filters_json)
{
    boost::system::error_code ec;
    boost::json::value filter = boost::json::parse(filter_json, ec);
    if (ec || !filter.is_object())
        return std::nullopt;
    const boost::json::value sent = boost::json::parse(filters_json, ec);
    if (ec || !sent.is_object())
        return std::nullopt;
    auto& f = filter.as_object();
    bool added = false;
    for (const auto& [field, instant, text] : {std::array<const char*, 3>{"startDateTime", "start", "startText"},
                                               std::array<const char*, 3>{"endDateTime", "end", "endText"}}) {
        const auto* written = sent.as_object().if_contains(field);
        const auto* ms = f.if_contains(instant);
        if (written == nullptr || !written->is_string() || ms == nullptr || !ms->is_int64())
            continue;
        if (parse_rfc3339(written->get_string()) != from_ms(ms->get_int64()))
            continue;
        f[text] = written->get_string();
        added = true;
    }
    if (!added)
        return std::nullopt;
    return boost::json::serialize(filter);
}

void migrate_to_v4(SQLite::Database& db)
{
    {
        // (Finalized before the ALTER TABLEs below.)
        SQLite::Statement rows(db, "SELECT id, filter_json, filters_json FROM jobs "
                                   "WHERE filters_json LIKE '%DateTime%'");
        SQLite::Statement update(db, "UPDATE jobs SET filter_json = ?2 WHERE id = ?1");
        while (rows.executeStep()) {
            const auto filter = with_range_texts(rows.getColumn(1).getString(), rows.getColumn(2).getString());
            if (!filter)
                continue;
            update.bind(1, rows.getColumn(0).getString());
            update.bind(2, *filter);
            update.exec();
            update.reset();
        }
    }
    db.exec(schema_v4);
}

using migration = void (*)(SQLite::Database&);

void migrate_to_v1(SQLite::Database& db) { db.exec(schema_v1); }
void migrate_to_v2(SQLite::Database& db) { db.exec(schema_v2); }
void migrate_to_v3(SQLite::Database& db) { db.exec(schema_v3); }

constexpr std::array<migration, 4> migrations{&migrate_to_v1, &migrate_to_v2, &migrate_to_v3, &migrate_to_v4};

} // namespace

int latest_schema_version() noexcept { return static_cast<int>(migrations.size()); }

void migrate_from(SQLite::Database& db, int version)
{
    for (int v = version; v < latest_schema_version(); ++v)
        migrations[static_cast<std::size_t>(v)](db);
}

} // namespace exportengine::adapters::sqlite_store_detail
