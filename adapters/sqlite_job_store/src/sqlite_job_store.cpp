#include <exportengine/adapters/sqlite_job_store.hpp>

#include <exportengine/error.hpp>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <limits>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <functional>
#include <stdexcept>
#include <system_error>
#include <type_traits>
#include <unordered_map>

namespace exportengine::adapters {
namespace {

using boost::system::error_code;

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

using migration = void (*)(SQLite::Database&);

void migrate_to_v1(SQLite::Database& db) { db.exec(schema_v1); }
void migrate_to_v2(SQLite::Database& db) { db.exec(schema_v2); }
void migrate_to_v3(SQLite::Database& db) { db.exec(schema_v3); }

constexpr std::array<migration, 3> migrations{&migrate_to_v1, &migrate_to_v2, &migrate_to_v3};

// Every query that reads a whole job selects these columns, in this order
// (read_job's indexes).
#define EE_JOB_COLUMNS                                                                      \
    "id, account_id, type, filter_json, compression, delimiter, bom, filters_json, status, " \
    "created_at, updated_at, completed_at, expires_at, attempt, lease_owner, lease_token, "  \
    "lease_expires_at, row_count, file_size, checksum, file_key, error_code, error_message, "  \
    "version"
constexpr int job_column_count = 24;

// Thrown inside an operation to roll its transaction back and report `code`
// (a refusal the caller should see, not a store failure).
struct refusal {
    errc code;
};

// A store invariant broke (a corrupt row, an illegal transition): the
// operation fails with store_failed and its transaction rolls back.
[[noreturn]] void corrupt(const char* what) { throw std::runtime_error(what); }

void require_legal(export_status from, export_status to)
{
    if (!is_legal_transition(from, to))
        corrupt("illegal job state transition");
}

std::int64_t to_ms(timestamp t) noexcept { return t.time_since_epoch().count(); }
timestamp from_ms(std::int64_t ms) noexcept { return timestamp{std::chrono::milliseconds{ms}}; }

std::int64_t clamp_limit(std::size_t n) noexcept
{
    return static_cast<std::int64_t>(
        std::min<std::size_t>(n, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
}

// ---------------------------------------------------------------------------
// The typed filter, as JSON: {"kind":"contacts","listIds":[..],"contactIds":[..]}
// or {"kind":"deliveryReports","campaignId":n,"start":ms,"end":ms} (absent
// members are nullopt). The variant's alternative is stored, not derived
// from `type`, so any request round-trips exactly.

std::string encode_filter(const std::variant<contacts_filter, delivery_reports_filter>& filter)
{
    boost::json::object o;
    if (const auto* c = std::get_if<contacts_filter>(&filter)) {
        o["kind"] = "contacts";
        o["listIds"] = boost::json::value_from(c->list_ids);
        o["contactIds"] = boost::json::value_from(c->contact_ids);
    } else {
        const auto& d = std::get<delivery_reports_filter>(filter);
        o["kind"] = "deliveryReports";
        if (d.campaign_id)
            o["campaignId"] = *d.campaign_id;
        if (d.start)
            o["start"] = to_ms(*d.start);
        if (d.end)
            o["end"] = to_ms(*d.end);
    }
    return boost::json::serialize(o);
}

std::vector<std::int64_t> decode_ids(const boost::json::object& o, const char* name)
{
    std::vector<std::int64_t> ids;
    const auto& a = o.at(name).as_array();
    ids.reserve(a.size());
    for (const auto& v : a)
        ids.push_back(v.to_number<std::int64_t>());
    return ids;
}

std::optional<std::int64_t> decode_optional(const boost::json::object& o, const char* name)
{
    const auto* v = o.if_contains(name);
    if (v == nullptr)
        return std::nullopt;
    return v->to_number<std::int64_t>();
}

std::variant<contacts_filter, delivery_reports_filter> decode_filter(const std::string& text)
{
    const auto value = boost::json::parse(text);
    const auto& o = value.as_object();
    const auto& kind = o.at("kind").as_string();
    if (kind == "contacts")
        return contacts_filter{decode_ids(o, "listIds"), decode_ids(o, "contactIds")};
    if (kind != "deliveryReports")
        corrupt("unknown filter kind");
    delivery_reports_filter d;
    d.campaign_id = decode_optional(o, "campaignId");
    if (auto ms = decode_optional(o, "start"))
        d.start = from_ms(*ms);
    if (auto ms = decode_optional(o, "end"))
        d.end = from_ms(*ms);
    return d;
}

// ---------------------------------------------------------------------------
// Reading and binding.

std::optional<timestamp> optional_time(const SQLite::Column& c)
{
    if (c.isNull())
        return std::nullopt;
    return from_ms(c.getInt64());
}

std::optional<std::int64_t> optional_int(const SQLite::Column& c)
{
    if (c.isNull())
        return std::nullopt;
    return c.getInt64();
}

export_job read_job(const SQLite::Statement& s)
{
    if (s.getColumnCount() < job_column_count)
        corrupt("short job row");
    export_job j;
    j.id = s.getColumn(0).getString();
    j.account_id = s.getColumn(1).getInt64();
    const auto type = parse_export_type(s.getColumn(2).getString());
    const auto compression = parse_compression(s.getColumn(4).getString());
    const auto status = parse_export_status(s.getColumn(8).getString());
    if (!type || !compression || !status)
        corrupt("unknown enumerator in job row");
    j.request.type = *type;
    j.request.filter = decode_filter(s.getColumn(3).getString());
    j.request.format.compression = *compression;
    j.request.format.delimiter =
        static_cast<char>(static_cast<unsigned char>(s.getColumn(5).getInt()));
    j.request.format.bom = s.getColumn(6).getInt() != 0;
    j.request.filters_json = s.getColumn(7).getString();
    j.status = *status;
    j.created_at = from_ms(s.getColumn(9).getInt64());
    j.updated_at = from_ms(s.getColumn(10).getInt64());
    j.completed_at = optional_time(s.getColumn(11));
    j.expires_at = optional_time(s.getColumn(12));
    j.attempt = s.getColumn(13).getInt();
    if (j.status == export_status::processing) {
        // The token column outlives the lease (it is the last one issued);
        // only a processing job has a lease to report.
        j.lease.owner = s.getColumn(14).getString();
        j.lease.token = s.getColumn(15).getInt64();
        j.lease_expires_at = optional_time(s.getColumn(16));
    }
    j.row_count = optional_int(s.getColumn(17));
    j.file_size = optional_int(s.getColumn(18));
    j.checksum = s.getColumn(19).getString();
    j.file_key = s.getColumn(20).getString();
    if (!s.getColumn(21).isNull())
        j.error = job_error{s.getColumn(21).getString(), s.getColumn(22).getString()};
    j.version = s.getColumn(23).getInt64();
    return j;
}

void bind(SQLite::Statement& s, int i, std::string_view v) { s.bind(i, std::string(v)); }
void bind(SQLite::Statement& s, int i, std::int64_t v) { s.bind(i, v); }
void bind(SQLite::Statement& s, int i, timestamp t) { s.bind(i, to_ms(t)); }

// Binds `args` to parameters ?1, ?2, ... in order.
template <class... Args>
void bind_all(SQLite::Statement& s, const Args&... args)
{
    [[maybe_unused]] int i = 0;
    (bind(s, ++i, args), ...);
}

// A cached statement in use: bindings cleared on entry, reset on exit, so a
// finished SELECT never keeps a read snapshot open between calls.
class statement_use {
public:
    explicit statement_use(SQLite::Statement& s) : s_(s) { s_.clearBindings(); }
    statement_use(const statement_use&) = delete;
    statement_use& operator=(const statement_use&) = delete;
    ~statement_use() { s_.tryReset(); }
    SQLite::Statement& operator*() const noexcept { return s_; }
    SQLite::Statement* operator->() const noexcept { return &s_; }

private:
    SQLite::Statement& s_;
};

// ---------------------------------------------------------------------------
// The SQL. Each text is prepared once per connection (keyed by its address).

namespace sql {
const char* const begin_immediate = "BEGIN IMMEDIATE";
const char* const savepoint_write = "SAVEPOINT one_write";
const char* const release_write = "RELEASE one_write";
const char* const rollback_write = "ROLLBACK TO one_write";
const char* const savepoint_claim = "SAVEPOINT claim_next";
const char* const release_claim = "RELEASE claim_next";
const char* const rollback_claim = "ROLLBACK TO claim_next";
const char* const sync_normal = "PRAGMA synchronous = NORMAL";
const char* const sync_full = "PRAGMA synchronous = FULL";
const char* const begin_read = "BEGIN DEFERRED";
const char* const commit = "COMMIT";

const char* const job_by_id = "SELECT " EE_JOB_COLUMNS " FROM jobs WHERE id = ?1";

const char* const insert_job =
    "INSERT INTO jobs (id, account_id, type, filter_json, compression, delimiter, bom, "
    "filters_json, status, created_at, updated_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?9)";
const char* const find_key =
    "SELECT request_hash, job_id, created_at FROM idempotency_keys "
    "WHERE account_id = ?1 AND \"key\" = ?2";
const char* const put_key =
    "INSERT OR REPLACE INTO idempotency_keys (account_id, \"key\", request_hash, job_id, created_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5)";

const char* const count_account =
    "SELECT IFNULL((SELECT total FROM account_queue WHERE account_id = ?1), 0)";
const char* const page_account = "SELECT " EE_JOB_COLUMNS " FROM jobs WHERE account_id = ?1 "
                                 "ORDER BY created_at DESC, id DESC LIMIT ?2 OFFSET ?3";

// Claiming picks the account first, then its oldest queued job: two index
// seeks, whatever the length of the queue. Among accounts with queued jobs
// and fewer than ?1 running: the fewest running, then the one served least
// recently (so a long queue of one account takes turns with everyone
// else's). account_queue's counts are kept by triggers (see the schema).
const char* const pick_account =
    "SELECT account_id FROM account_queue INDEXED BY account_queue_ready "
    "WHERE queued > 0 AND running < ?1 ORDER BY running, last_claim, account_id LIMIT 1";
const char* const pick_job =
    "SELECT id FROM jobs WHERE status = 'queued' AND account_id = ?1 "
    "ORDER BY created_at, id LIMIT 1";
const char* const take_turn =
    "UPDATE account_queue SET last_claim = MAX(1, (SELECT MAX(last_claim) FROM account_queue) + 1) "
    "WHERE account_id = ?1";
const char* const claim_job =
    "UPDATE jobs SET status = 'processing', attempt = attempt + 1, lease_owner = ?2, "
    "lease_token = lease_token + 1, lease_expires_at = ?3, updated_at = ?4, row_count = 0, "
    "error_code = NULL, error_message = NULL, version = version + 1 "
    "WHERE id = ?1 AND status = 'queued'";

// The fenced writes: ?1 id, ?2 lease owner, ?3 lease token, ?4 now.
#define EE_FENCE " WHERE id = ?1 AND status = 'processing' AND lease_owner = ?2 AND lease_token = ?3"
const char* const heartbeat =
    "UPDATE jobs SET lease_expires_at = ?5, row_count = ?6, updated_at = ?4" EE_FENCE;
const char* const complete =
    "UPDATE jobs SET status = 'available', row_count = ?5, file_size = ?6, checksum = ?7, "
    "file_key = ?8, completed_at = ?9, expires_at = ?10, lease_owner = '', "
    "lease_expires_at = NULL, error_code = NULL, error_message = NULL, updated_at = ?4, "
    "version = version + 1" EE_FENCE;
const char* const fail =
    "UPDATE jobs SET status = 'failed', error_code = ?5, error_message = ?6, row_count = NULL, "
    "lease_owner = '', lease_expires_at = NULL, updated_at = ?4, version = version + 1" EE_FENCE;
// ?5: 1 gives the attempt back (a graceful stop), 0 keeps it (a lost lease).
const char* const requeue =
    "UPDATE jobs SET status = 'queued', attempt = attempt - ?5, row_count = NULL, "
    "lease_owner = '', lease_expires_at = NULL, updated_at = ?4, version = version + 1" EE_FENCE;
#undef EE_FENCE

const char* const expired_leases =
    "SELECT id, attempt, lease_owner, lease_token FROM jobs "
    "WHERE status = 'processing' AND lease_expires_at < ?1 ORDER BY lease_expires_at, id";

// (An available job always has an expiry: the schema checks it.)
const char* const due_to_expire =
    "SELECT " EE_JOB_COLUMNS " FROM jobs WHERE status = 'available' AND expires_at <= ?1 "
    "ORDER BY expires_at, id LIMIT ?2";
const char* const expire_job =
    "UPDATE jobs SET status = 'expired', updated_at = ?2, version = version + 1 "
    "WHERE id = ?1 AND status = 'available'";

const char* const files_to_delete =
    "SELECT id, file_key FROM jobs "
    "WHERE status IN ('expired', 'failed') AND file_key <> '' "
    "UNION ALL "
    "SELECT job_id, stale_key FROM stale_files "
    "LIMIT ?1";
const char* const clear_live_file =
    "UPDATE jobs SET file_key = '', version = version + 1 "
    "WHERE id = ?1 AND file_key = ?2 AND status IN ('expired', 'failed')";
// Records a key a lost or superseded claim may have published.
const char* const retire_key =
    "INSERT OR IGNORE INTO stale_files (job_id, stale_key, retired_at) VALUES (?1, ?2, ?3)";
const char* const clear_stale_file = "DELETE FROM stale_files WHERE job_id = ?1 AND stale_key = ?2";
// Moves the job's live file key to stale_files unless it is empty or ?2.
const char* const retire_file =
    "INSERT OR IGNORE INTO stale_files (job_id, stale_key, retired_at) "
    "SELECT id, file_key, ?3 FROM jobs WHERE id = ?1 AND file_key NOT IN ('', ?2)";

const char* const regenerate =
    "UPDATE jobs SET status = 'queued', attempt = 0, error_code = NULL, error_message = NULL, "
    "completed_at = NULL, expires_at = NULL, row_count = NULL, file_size = NULL, checksum = '', "
    "file_key = '', lease_owner = '', lease_expires_at = NULL, updated_at = ?2, "
    "version = version + 1 WHERE id = ?1";

const char* const prune_jobs =
    "DELETE FROM jobs WHERE status IN ('expired', 'failed') AND updated_at < ?1 "
    "AND file_key = '' AND NOT EXISTS (SELECT 1 FROM stale_files WHERE job_id = jobs.id)";
const char* const prune_keys = "DELETE FROM idempotency_keys WHERE created_at < ?1";
} // namespace sql

#undef EE_JOB_COLUMNS

} // namespace

// ---------------------------------------------------------------------------

struct sqlite_job_store::impl {
    // db_ before statements_: statements are finalized before the connection
    // closes.
    SQLite::Database db_;
    std::unordered_map<const char*, std::unique_ptr<SQLite::Statement>> statements_;
    std::mutex mutex_;

    impl(const std::string& path, const sqlite_job_store_options& options)
        : db_(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE,
              static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(
                  options.busy_timeout.count(), 0, std::numeric_limits<int>::max())))
    {
        // Reading the journal mode is also the first read of the file: a
        // file that is not a database fails here.
        if (db_.execAndGet("PRAGMA journal_mode = WAL").getString() != "wal")
            throw std::runtime_error("cannot use WAL");
        db_.exec("PRAGMA synchronous = FULL");
        db_.exec("PRAGMA foreign_keys = ON");
        migrate();
    }

    void migrate()
    {
        constexpr int latest = static_cast<int>(migrations.size());
        if (db_.execAndGet("PRAGMA user_version").getInt() == latest)
            return;
        // Re-read under the write lock: another process may be migrating.
        write_transaction tx(*this);
        const int version = db_.execAndGet("PRAGMA user_version").getInt();
        if (version < 0 || version > latest)
            throw unknown_schema{};
        for (int v = version; v < latest; ++v)
            migrations[static_cast<std::size_t>(v)](db_);
        db_.exec("PRAGMA user_version = " + std::to_string(latest));
        tx.commit();
    }

    // A user_version this code has no migration from (a newer release's).
    struct unknown_schema {};

    statement_use use(const char* text)
    {
        auto& slot = statements_[text];
        if (!slot)
            slot = std::make_unique<SQLite::Statement>(db_, text);
        return statement_use(*slot);
    }

    // Executes a statement that returns no rows; returns the rows changed.
    template <class... Args>
    int execute(const char* text, const Args&... args)
    {
        auto s = use(text);
        bind_all(*s, args...);
        return s->exec();
    }

    // A transaction, rolled back unless committed. BEGIN IMMEDIATE takes the
    // database's write lock before the first read, so nothing a
    // read-modify-write has read can change before it writes, whoever else
    // has the file open.
    class transaction {
    public:
        transaction(impl& self, const char* begin) : self_(self) { self_.execute(begin); }
        transaction(const transaction&) = delete;
        transaction& operator=(const transaction&) = delete;
        ~transaction()
        {
            // Some errors (a full disk, I/O) make SQLite roll back by itself.
            if (!committed_ && sqlite3_get_autocommit(self_.db_.getHandle()) == 0)
                sqlite3_exec(self_.db_.getHandle(), "ROLLBACK", nullptr, nullptr, nullptr);
        }
        void commit()
        {
            self_.execute(sql::commit);
            committed_ = true;
        }

    private:
        impl& self_;
        bool committed_ = false;
    };
    // Lets the commits made while it lives skip the WAL's fsync
    // (synchronous = NORMAL), for the one write that changes no state and
    // may be lost to a power cut without harm: a heartbeat (it only brings a
    // lease's end closer). It still survives a crash of the process, and
    // the next FULL commit makes it durable with it, since the WAL is one
    // sequential log. Every state change (SPEC §2: create, claim, complete,
    // fail, regenerate) stays FULL: durable before it is reported.
    class relaxed_sync {
    public:
        explicit relaxed_sync(impl& self) : self_(self) { self_.execute(sql::sync_normal); }
        relaxed_sync(const relaxed_sync&) = delete;
        relaxed_sync& operator=(const relaxed_sync&) = delete;
        ~relaxed_sync()
        {
            try {
                self_.execute(sql::sync_full);
            } catch (...) {
                // Cannot fail on an open connection; if it ever did, the
                // next operation finds the connection in the same state.
            }
        }

    private:
        impl& self_;
    };
    struct write_transaction : transaction {
        explicit write_transaction(impl& self) : transaction(self, sql::begin_immediate) {}
    };
    struct read_transaction : transaction {
        explicit read_transaction(impl& self) : transaction(self, sql::begin_read) {}
    };

    // Runs one operation under the connection's mutex, mapping every failure
    // to `ec`: a refusal to its code, anything else to store_failed.
    template <class F>
    auto run(error_code& ec, F&& f) -> std::invoke_result_t<F&>
    {
        using result = std::invoke_result_t<F&>;
        ec.clear();
        try {
            std::lock_guard lock(mutex_);
            return f();
        } catch (const refusal& r) {
            ec = r.code;
        } catch (...) {
            ec = errc::store_failed;
        }
        if constexpr (!std::is_void_v<result>)
            return result{};
    }

    std::optional<export_job> load(std::string_view id)
    {
        auto s = use(sql::job_by_id);
        bind_all(*s, id);
        if (!s->executeStep())
            return std::nullopt;
        return read_job(*s);
    }

    export_job load_existing(std::string_view id)
    {
        auto job = load(id);
        if (!job)
            corrupt("job vanished inside its transaction");
        return *std::move(job);
    }

    // Moves job `id` from processing to `to` with a fenced update; throws a
    // lease_lost refusal when `l` is not its current lease.
    template <class... Args>
    void fenced(const char* text, export_status to, std::string_view id, const job_lease& l,
                timestamp now, const Args&... more)
    {
        require_legal(export_status::processing, to);
        if (execute(text, id, std::string_view(l.owner), l.token, now, more...) != 1)
            throw refusal{errc::lease_lost};
    }

    // One create's statements, inside the caller's write transaction.
    create_result create_in(const new_job& job, const std::optional<idempotency_key>& key)
    {
        if (key) {
            auto s = use(sql::find_key);
            bind_all(*s, job.account_id, std::string_view(key->key));
            if (s->executeStep() && s->getColumn(2).getInt64() >= to_ms(key->not_before)) {
                if (s->getColumn(0).getString() != key->request_hash)
                    throw refusal{errc::idempotency_key_reused};
                return {load_existing(s->getColumn(1).getString()), false};
            }
            // Unknown, or an older use: this create takes the key over below.
        }
        const auto& r = job.request;
        execute(sql::insert_job, std::string_view(job.id), job.account_id, to_string(r.type),
                       std::string_view(encode_filter(r.filter)), to_string(r.format.compression),
                       std::int64_t{static_cast<unsigned char>(r.format.delimiter)},
                       std::int64_t{r.format.bom ? 1 : 0}, std::string_view(r.filters_json),
                       job.created_at);
        if (key)
            execute(sql::put_key, job.account_id, std::string_view(key->key),
                           std::string_view(key->request_hash), std::string_view(job.id),
                           job.created_at);
        return {load_existing(job.id), true};
    }

    // -- group commit ------------------------------------------------------
    // Used for creates (what arrives many at a time, from API clients);
    // the workers' claims and completions keep their own transactions,
    // since making a worker wait for company slowed the jobs/s benchmark.
    // The writes that come in while another thread commits wait, and the
    // next of them commits them all in one transaction: one fsync for the
    // lot, each still durable before its call returns (SPEC §2), and no
    // reader can see one before the commit (a batch holds `mutex_` from its
    // BEGIN to its COMMIT). Each write runs under its own savepoint, so one
    // that is refused (a lost lease, a reused idempotency key) leaves the
    // others be. With one writer at a time a batch is one write: nothing
    // waits for company.
    struct pending_write {
        std::function<void()> body; // the write's statements; may throw
        error_code ec{};
        bool done = false;          // guarded by batch_mu_
    };
    std::mutex batch_mu_;
    std::condition_variable batch_cv_;
    std::vector<pending_write*> batch_queue_; // guarded by batch_mu_
    bool batch_leader_ = false;               // guarded by batch_mu_

    // Runs `f` (statements only, no transaction of its own) in the next
    // group commit; maps a failure to `ec` as run() does.
    template <class F>
    auto batched(error_code& ec, F&& f) -> std::invoke_result_t<F&>
    {
        using result = std::invoke_result_t<F&>;
        std::optional<result> out;
        pending_write op;
        op.body = [&] { out.emplace(f()); };
        std::unique_lock lk(batch_mu_);
        batch_queue_.push_back(&op);
        while (!op.done) {
            if (batch_leader_) {
                batch_cv_.wait(lk);
                continue;
            }
            batch_leader_ = true;
            std::vector<pending_write*> batch;
            batch.swap(batch_queue_);
            lk.unlock();
            commit_batch(batch);
            lk.lock();
            batch_leader_ = false;
            for (auto* p : batch)
                p->done = true;
            batch_cv_.notify_all();
        }
        ec = op.ec;
        if (ec || !out)
            return result{};
        return std::move(*out);
    }

    void commit_batch(const std::vector<pending_write*>& batch)
    {
        try {
            std::lock_guard lock(mutex_);
            write_transaction tx(*this);
            for (auto* p : batch) {
                execute(sql::savepoint_write);
                try {
                    p->body();
                    execute(sql::release_write);
                } catch (const refusal& r) {
                    p->ec = r.code;
                    execute(sql::rollback_write);
                    execute(sql::release_write);
                }
            }
            tx.commit();
        } catch (...) {
            // A statement or the COMMIT failed: the transaction, and so
            // every write in it, is rolled back.
            for (auto* p : batch)
                if (!p->ec)
                    p->ec = errc::store_failed;
        }
    }

    // The claim's statements, inside the caller's write transaction.
    std::optional<export_job> claim_in(const std::string& owner, timestamp now, timestamp lease_until,
                                       int per_account_limit)
    {
        std::int64_t account = 0;
        {
            auto s = use(sql::pick_account);
            bind_all(*s, std::int64_t{per_account_limit});
            if (!s->executeStep())
                return std::nullopt; // rolls back: nothing was written
            account = s->getColumn(0).getInt64();
        }
        std::string id;
        {
            auto s = use(sql::pick_job);
            bind_all(*s, account);
            if (!s->executeStep())
                corrupt("the claimed account has no queued job");
            id = s->getColumn(0).getString();
        }
        execute(sql::take_turn, account);
        require_legal(export_status::queued, export_status::processing);
        if (execute(sql::claim_job, std::string_view(id), std::string_view(owner),
                           lease_until, now)
            != 1)
            corrupt("claim lost its row");
        auto job = load_existing(id);
        // The previous claim's file may exist (it published, then lost its
        // lease): record it for the sweep with the claim.
        if (job.lease.token > 1)
            execute(sql::retire_key, std::string_view(id),
                    std::string_view(export_file_key(job, job.lease.token - 1)), now);
        return job;
    }

    // The completion's statements, inside the caller's write transaction;
    // throws a lease_lost refusal when `l` is not the current lease.
    export_job complete_in(std::string_view id, const job_lease& l, const completion& result, timestamp now)
    {
        // A different key already on the job would be overwritten: keep it
        // for the sweeper. The new key is live, so it is stale no more.
        // (Both undone by the rollback if the lease turns out to be lost.)
        const std::string_view key = result.file_key;
        execute(sql::retire_file, id, key, now);
        execute(sql::clear_stale_file, id, key);
        fenced(sql::complete, export_status::available, id, l, now, result.row_count,
                      result.file_size, std::string_view(result.checksum), key,
                      result.completed_at, result.expires_at);
        return load_existing(id);
    }

    void expire(const export_job& job, timestamp now)
    {
        require_legal(job.status, export_status::expired);
        if (execute(sql::expire_job, std::string_view(job.id), now) != 1)
            corrupt("expiry lost its row");
    }
};

// ---------------------------------------------------------------------------

sqlite_job_store::sqlite_job_store(const std::string& path, const sqlite_job_store_options& options)
{
    const auto fail_open = [&](const std::string& why) {
        const error_code code = errc::store_failed;
        return std::system_error(std::error_code(code),
                                 "cannot open the job store '" + path + "': " + why);
    };
    try {
        impl_ = std::make_unique<impl>(path, options);
    } catch (const SQLite::Exception& e) {
        // sqlite3_errstr: the generic text of the result code, never SQL.
        throw fail_open(sqlite3_errstr(e.getErrorCode()));
    } catch (const impl::unknown_schema&) {
        throw fail_open("its schema version is unknown to this version of exportengine");
    } catch (const std::exception&) {
        throw fail_open("unexpected failure");
    }
}

sqlite_job_store::~sqlite_job_store() = default;

create_result sqlite_job_store::create(const new_job& job, const std::optional<idempotency_key>& key,
                                       error_code& ec)
{
    return impl_->batched(ec, [&] { return impl_->create_in(job, key); });
}

job_page sqlite_job_store::list(std::int64_t account_id, std::int64_t page, std::int64_t limit,
                                error_code& ec)
{
    return impl_->run(ec, [&] {
        job_page out;
        impl::read_transaction tx(*impl_);
        {
            auto s = impl_->use(sql::count_account);
            bind_all(*s, account_id);
            s->executeStep();
            out.total = s->getColumn(0).getInt64();
        }
        if (page >= 0 && limit > 0 && page <= (std::numeric_limits<std::int64_t>::max() / limit)) {
            auto s = impl_->use(sql::page_account);
            bind_all(*s, account_id, limit, page * limit);
            while (s->executeStep())
                out.jobs.push_back(read_job(*s));
        }
        tx.commit();
        return out;
    });
}

std::optional<export_job> sqlite_job_store::get(std::int64_t account_id, std::string_view id,
                                                error_code& ec)
{
    return impl_->run(ec, [&] {
        auto job = impl_->load(id);
        if (job && job->account_id != account_id)
            job.reset();
        return job;
    });
}

std::optional<export_job> sqlite_job_store::find(std::string_view id, error_code& ec)
{
    return impl_->run(ec, [&] { return impl_->load(id); });
}

std::optional<export_job> sqlite_job_store::claim(const std::string& owner, timestamp now,
                                                  timestamp lease_until, int per_account_limit,
                                                  error_code& ec)
{
    return impl_->run(ec, [&]() -> std::optional<export_job> {
        impl::write_transaction tx(*impl_);
        auto job = impl_->claim_in(owner, now, lease_until, per_account_limit);
        if (job)
            tx.commit();
        return job;
    });
}

complete_result sqlite_job_store::complete_and_claim(const completion_request& r, error_code& ec)
{
    // One transaction, one fsync: the completion and the claim are durable
    // together before either is reported. A refused completion claims
    // nothing (the transaction rolls back).
    return impl_->run(ec, [&]() -> complete_result {
        complete_result out;
        impl::write_transaction tx(*impl_);
        out.completed = impl_->complete_in(r.id, r.lease, r.result, r.now);
        if (r.next) {
            // A failing claim must not take the completion with it.
            impl_->execute(sql::savepoint_claim);
            try {
                out.next = impl_->claim_in(r.next->owner, r.next->now, r.next->lease_until,
                                           r.next->per_account_limit);
                impl_->execute(sql::release_claim);
            } catch (const refusal& e) {
                out.claim_error = e.code;
            } catch (const std::exception&) {
                out.claim_error = errc::store_failed;
            }
            if (out.claim_error) {
                out.next.reset();
                impl_->execute(sql::rollback_claim);
                impl_->execute(sql::release_claim);
            }
        }
        tx.commit();
        return out;
    });
}

bool sqlite_job_store::heartbeat(std::string_view id, const job_lease& l, timestamp now,
                                 timestamp lease_until, std::int64_t rows_so_far, error_code& ec)
{
    // One UPDATE: atomic without an explicit transaction.
    return impl_->run(ec, [&] {
        impl::relaxed_sync relaxed(*impl_);
        return impl_->execute(sql::heartbeat, id, std::string_view(l.owner), l.token, now,
                              lease_until, rows_so_far)
               == 1;
    });
}

std::optional<export_job> sqlite_job_store::complete(std::string_view id, const job_lease& l,
                                                     const completion& result, timestamp now,
                                                     error_code& ec)
{
    return impl_->run(ec, [&]() -> std::optional<export_job> {
        impl::write_transaction tx(*impl_);
        auto job = impl_->complete_in(id, l, result, now);
        tx.commit();
        return job;
    });
}

std::optional<export_job> sqlite_job_store::fail(std::string_view id, const job_lease& l,
                                                 const job_error& error, timestamp now,
                                                 error_code& ec)
{
    return impl_->run(ec, [&]() -> std::optional<export_job> {
        impl::write_transaction tx(*impl_);
        impl_->fenced(sql::fail, export_status::failed, id, l, now, std::string_view(error.code),
                      std::string_view(error.message));
        auto job = impl_->load_existing(id);
        tx.commit();
        return job;
    });
}

std::optional<export_job> sqlite_job_store::release(std::string_view id, const job_lease& l,
                                                    timestamp now, error_code& ec)
{
    return impl_->run(ec, [&]() -> std::optional<export_job> {
        impl::write_transaction tx(*impl_);
        impl_->fenced(sql::requeue, export_status::queued, id, l, now, std::int64_t{1});
        auto job = impl_->load_existing(id);
        tx.commit();
        return job;
    });
}

requeue_result sqlite_job_store::requeue_expired_leases(timestamp now, int max_attempts,
                                                        const job_error& exhausted, error_code& ec)
{
    return impl_->run(ec, [&] {
        impl::write_transaction tx(*impl_);
        struct expired_lease {
            std::string id;
            int attempt;
            job_lease lease;
        };
        std::vector<expired_lease> due;
        {
            auto s = impl_->use(sql::expired_leases);
            bind_all(*s, now);
            while (s->executeStep())
                due.push_back({s->getColumn(0).getString(), s->getColumn(1).getInt(),
                               {s->getColumn(2).getString(), s->getColumn(3).getInt64()}});
        }
        requeue_result out;
        out.jobs.reserve(due.size());
        for (const auto& d : due) {
            if (d.attempt < max_attempts)
                impl_->fenced(sql::requeue, export_status::queued, d.id, d.lease, now,
                              std::int64_t{0});
            else
                impl_->fenced(sql::fail, export_status::failed, d.id, d.lease, now,
                              std::string_view(exhausted.code),
                              std::string_view(exhausted.message));
            out.jobs.push_back(impl_->load_existing(d.id));
            // The lost claim may have published its file before it died.
            impl_->execute(sql::retire_key, std::string_view(d.id),
                           std::string_view(export_file_key(out.jobs.back(), d.lease.token)), now);
        }
        tx.commit();
        return out;
    });
}

std::vector<export_job> sqlite_job_store::expire_due(timestamp now, std::size_t limit,
                                                     error_code& ec)
{
    return impl_->run(ec, [&] {
        impl::write_transaction tx(*impl_);
        std::vector<export_job> expired;
        {
            auto s = impl_->use(sql::due_to_expire);
            bind_all(*s, now, clamp_limit(limit));
            while (s->executeStep())
                expired.push_back(read_job(*s));
        }
        for (auto& job : expired) {
            impl_->expire(job, now);
            job.status = export_status::expired;
            job.updated_at = now;
            ++job.version;
        }
        tx.commit();
        return expired;
    });
}

std::vector<file_to_delete> sqlite_job_store::files_to_delete(std::size_t limit, error_code& ec)
{
    return impl_->run(ec, [&] {
        std::vector<file_to_delete> out;
        auto s = impl_->use(sql::files_to_delete);
        bind_all(*s, clamp_limit(limit));
        while (s->executeStep())
            out.push_back({s->getColumn(0).getString(), s->getColumn(1).getString()});
        return out;
    });
}

void sqlite_job_store::forget_file(std::string_view job_id, std::string_view file_key, error_code& ec)
{
    impl_->run(ec, [&] {
        if (file_key.empty())
            return;
        impl::write_transaction tx(*impl_);
        impl_->execute(sql::clear_live_file, job_id, file_key);
        impl_->execute(sql::clear_stale_file, job_id, file_key);
        tx.commit();
    });
}

std::optional<regenerate_result> sqlite_job_store::regenerate(std::int64_t account_id, std::string_view id,
                                                              timestamp now,
                                                              const std::optional<idempotency_key>& key,
                                                              error_code& ec)
{
    return impl_->run(ec, [&]() -> std::optional<regenerate_result> {
        impl::write_transaction tx(*impl_);
        auto job = impl_->load(id);
        if (!job || job->account_id != account_id)
            throw refusal{errc::not_found};
        if (key) {
            auto s = impl_->use(sql::find_key);
            bind_all(*s, account_id, std::string_view(key->key));
            if (s->executeStep() && s->getColumn(2).getInt64() >= to_ms(key->not_before)) {
                if (s->getColumn(0).getString() != key->request_hash || s->getColumn(1).getString() != id)
                    throw refusal{errc::idempotency_key_reused};
                tx.commit();
                return regenerate_result{std::move(*job), false};
            }
        }
        if (job->effective_status(now) == export_status::expired
            && job->status == export_status::available) {
            // available -> queued is no legal transition: record the expiry
            // the clock already implies, then regenerate from expired.
            impl_->expire(*job, now);
            job->status = export_status::expired;
        }
        if (job->status != export_status::expired && job->status != export_status::failed)
            throw refusal{errc::export_not_expired};
        require_legal(job->status, export_status::queued);
        impl_->execute(sql::retire_file, id, std::string_view{}, now);
        impl_->execute(sql::regenerate, id, now);
        if (key)
            impl_->execute(sql::put_key, account_id, std::string_view(key->key),
                           std::string_view(key->request_hash), id, now);
        auto regenerated = impl_->load_existing(id);
        tx.commit();
        return regenerate_result{std::move(regenerated), true};
    });
}

std::int64_t sqlite_job_store::prune(timestamp older_than, error_code& ec)
{
    return impl_->run(ec, [&] {
        impl::write_transaction tx(*impl_);
        const std::int64_t jobs = impl_->execute(sql::prune_jobs, older_than);
        impl_->execute(sql::prune_keys, older_than);
        tx.commit();
        return jobs;
    });
}

} // namespace exportengine::adapters
