#include <exportengine/adapters/postgres_job_store.hpp>

#include "job_codec.hpp"
#include "pq.hpp"
#include "schema.hpp"
#include "wakeups.hpp"

#include <exportengine/error.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <system_error>
#include <tuple>
#include <type_traits>

namespace exportengine::adapters {

using boost::system::error_code;
using namespace pg_detail;

namespace {

// ---------------------------------------------------------------------------
// The SQL. Instants are bigint milliseconds; $-parameters in text format.

namespace sql {
// Most calls are one statement in one round trip, as a named prepared
// statement (parsed and planned once per connection). The store's clock is
// read inside the statement: EE_NOW(n) is the database's now() in
// milliseconds, or parameter $n when it is not NULL (the frozen test clock,
// or the instant of the transaction a statement runs in).
#define EE_NOW(n) "COALESCE($" #n "::bigint, floor(extract(epoch FROM now()) * 1000)::bigint)"

const char* const begin = "BEGIN";
const char* const commit = "COMMIT";
const char* const relaxed = "SET LOCAL synchronous_commit = off";

constexpr statement job_by_id{"ee_job", "SELECT " EE_PG_JOB_COLUMNS " FROM jobs WHERE id = $1"};
// The transaction's clock (now() is the transaction's start), or $1.
constexpr statement now{"ee_now", "SELECT " EE_NOW(1)};

// $9: the clock.
constexpr statement insert_job{
    "ee_insert",
    "INSERT INTO jobs (id, account_id, type, filter_json, compression, delimiter, bom, "
    "metadata_json, status, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', " EE_NOW(9) ", " EE_NOW(9) ") RETURNING " EE_PG_JOB_COLUMNS};
// Two uses of one new key at once: the second waits for the first's commit
// and then finds its key (instead of both creating a job).
constexpr statement lock_key{
    "ee_lock_key", "SELECT pg_advisory_xact_lock(hashtextextended('exportengine.key:' || $1 || ':' || $2, 0))"};
// Whether the key's use is recent enough to be answered: created at or
// after the clock ($3) plus the window's offset $4 (negative).
constexpr statement find_key{"ee_find_key",
                             "SELECT request_hash, job_id, created_at >= " EE_NOW(3) " + $4 "
                             "FROM idempotency_keys WHERE account_id = $1 AND \"key\" = $2"};
// $5: the clock.
constexpr statement put_key{
    "ee_put_key",
    "INSERT INTO idempotency_keys (account_id, \"key\", request_hash, job_id, created_at) "
    "VALUES ($1, $2, $3, $4, " EE_NOW(5) ") ON CONFLICT (account_id, \"key\") DO UPDATE SET "
    "request_hash = EXCLUDED.request_hash, job_id = EXCLUDED.job_id, created_at = EXCLUDED.created_at"};

// One page and the account's total in one statement (one snapshot): the
// page's columns, then the total; a page with no jobs is one row whose job
// columns are NULL.
constexpr statement list_page{
    "ee_list",
    "SELECT page.*, counts.total FROM "
    "(SELECT COALESCE((SELECT total FROM account_queue WHERE account_id = $1), 0) AS total) counts "
    "LEFT JOIN LATERAL (SELECT " EE_PG_JOB_COLUMNS " FROM jobs WHERE account_id = $1 "
    "ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3) page ON true"};

// The claim, in one statement: the account first (the first one by the
// fairness order whose row no one else holds, locked until commit), then
// its oldest queued job (locked too), the compare-and-set, and — for a
// claim with token t > 1 — the previous claim's file recorded for the
// sweep (it may exist: that claim may have published before it lost its
// lease). The key is export_file_key(job, t - 1) as export_job.cpp makes
// it: "<id>-<token>.csv" or ".csv.gz" (the conformance suite checks the two
// agree). The trigger, after the statement, counts the claim and stamps the
// account's turn. $1 limit, $2 owner, $3 lease duration (ms), $4 clock.
#define EE_CLAIM(guard)                                                                                    \
    "WITH clock AS (SELECT " EE_NOW(4) " AS now_ms"                                                          \
    "), account AS ("                                                                                        \
    "  SELECT account_id FROM account_queue"                                                                 \
    "  WHERE queued > 0 AND running < $1" guard                                                              \
    "  ORDER BY running, last_claim, account_id"                                                             \
    "  LIMIT 1 FOR UPDATE SKIP LOCKED"                                                                       \
    "), candidate AS ("                                                                                      \
    "  SELECT id AS candidate_id FROM jobs"                                                                  \
    "  WHERE status = 'queued' AND account_id = (SELECT account_id FROM account)"                            \
    "  ORDER BY created_at, id"                                                                              \
    "  LIMIT 1 FOR UPDATE SKIP LOCKED"                                                                       \
    "), claimed AS ("                                                                                        \
    "  UPDATE jobs SET status = 'processing', attempt = attempt + 1, lease_owner = $2, "                      \
    "  lease_token = lease_token + 1, lease_expires_at = clock.now_ms + $3, updated_at = clock.now_ms, "     \
    "  row_count = 0, error_code = NULL, error_message = NULL, version = version + 1 "                       \
    "  FROM candidate, clock WHERE id = candidate_id AND status = 'queued' "                                 \
    "  RETURNING jobs.*"                                                                                     \
    "), retired AS ("                                                                                        \
    "  INSERT INTO stale_files (job_id, stale_key, retired_at)"                                              \
    "  SELECT id, id || '-' || (lease_token - 1) || CASE compression WHEN 'gzip' THEN '.csv.gz' ELSE '.csv' END," \
    "  updated_at FROM claimed WHERE lease_token > 1 ON CONFLICT DO NOTHING"                                \
    ") SELECT " EE_PG_JOB_COLUMNS " FROM claimed"
constexpr statement claim{"ee_claim", EE_CLAIM("")};
// The same, only when job $5 is available with file $6 in this
// transaction: the claim of a complete_and_claim, sent in the same round
// trip as the completion, claims nothing when that completion was refused.
// (The key names the claim that wrote it, so no other completion can have
// left the job available with it.)
constexpr statement claim_after{
    "ee_claim_after",
    EE_CLAIM(" AND EXISTS (SELECT 1 FROM jobs WHERE id = $5 AND status = 'available' AND file_key = $6)")};
#undef EE_CLAIM

// The fenced writes: $1 id, $2 lease owner, $3 lease token, $4 clock.
#define EE_FENCE " WHERE id = $1 AND status = 'processing' AND lease_owner = $2 AND lease_token = $3"
// $5 lease duration (ms), $6 rows so far.
constexpr statement heartbeat{
    "ee_heartbeat",
    "UPDATE jobs SET lease_expires_at = " EE_NOW(4) " + $5, row_count = $6, updated_at = " EE_NOW(4) EE_FENCE};
// The completion, in one statement: the fenced compare-and-set; a different
// key the job named before (its old version, read in the same snapshot) is
// kept for the sweeper, and the new key, live now, is stale no more — both
// only when the compare-and-set happened. $5 rows, $6 size, $7 checksum,
// $8 key, $9 and $10 completed_at and expires_at as offsets from the clock.
constexpr statement complete{
    "ee_complete",
    "WITH clock AS (SELECT " EE_NOW(4) " AS now_ms"
    "), old AS (SELECT file_key AS old_key FROM jobs WHERE id = $1"
    "), done AS ("
    "  UPDATE jobs SET status = 'available', row_count = $5, file_size = $6, checksum = $7, "
    "  file_key = $8, completed_at = clock.now_ms + $9, expires_at = clock.now_ms + $10, lease_owner = '', "
    "  lease_expires_at = NULL, error_code = NULL, error_message = NULL, updated_at = clock.now_ms, "
    "  version = version + 1 FROM clock" EE_FENCE " RETURNING jobs.*"
    "), retired AS ("
    "  INSERT INTO stale_files (job_id, stale_key, retired_at)"
    "  SELECT $1, old_key, (SELECT now_ms FROM clock) FROM old"
    "  WHERE old_key <> '' AND old_key <> $8 AND EXISTS (SELECT 1 FROM done) ON CONFLICT DO NOTHING"
    "), live AS ("
    "  DELETE FROM stale_files WHERE job_id = $1 AND stale_key = $8 AND EXISTS (SELECT 1 FROM done)"
    ") SELECT " EE_PG_JOB_COLUMNS " FROM done"};
// $5 error code, $6 message.
constexpr statement fail{
    "ee_fail",
    "UPDATE jobs SET status = 'failed', error_code = $5, error_message = $6, row_count = NULL, "
    "lease_owner = '', lease_expires_at = NULL, updated_at = " EE_NOW(4) ", version = version + 1" EE_FENCE
    " RETURNING " EE_PG_JOB_COLUMNS};
// $5: 1 gives the attempt back (a graceful stop), 0 keeps it (a lost lease).
constexpr statement requeue{
    "ee_requeue",
    "UPDATE jobs SET status = 'queued', attempt = attempt - $5, row_count = NULL, "
    "lease_owner = '', lease_expires_at = NULL, updated_at = " EE_NOW(4) ", version = version + 1" EE_FENCE
    " RETURNING " EE_PG_JOB_COLUMNS};
#undef EE_FENCE

// Locked in account order: two requeuers lock account_queue rows (through
// the trigger, one UPDATE after another) in the same order, and prune
// locks them in that order too, so none of them can deadlock.
constexpr statement expired_leases{
    "ee_expired_leases",
    "SELECT id, attempt, lease_owner, lease_token FROM jobs "
    "WHERE status = 'processing' AND lease_expires_at < " EE_NOW(1) " ORDER BY account_id, id "
    "FOR UPDATE SKIP LOCKED"};

constexpr statement expire_due{
    "ee_expire_due",
    "WITH clock AS (SELECT " EE_NOW(1) " AS now_ms"
    "), due AS ("
    "  SELECT id AS due_id FROM jobs, clock WHERE status = 'available' AND expires_at <= clock.now_ms"
    "  ORDER BY expires_at, id LIMIT $2 FOR UPDATE OF jobs SKIP LOCKED"
    ") "
    "UPDATE jobs SET status = 'expired', updated_at = clock.now_ms, version = version + 1 "
    "FROM due, clock WHERE id = due_id RETURNING " EE_PG_JOB_COLUMNS};

constexpr statement files_to_delete{
    "ee_files_to_delete",
    "(SELECT id, file_key FROM jobs WHERE status IN ('expired', 'failed') AND file_key <> '') "
    "UNION ALL "
    "(SELECT job_id, stale_key FROM stale_files) "
    "LIMIT $1"};
constexpr statement clear_live_file{"ee_clear_live_file",
                                    "UPDATE jobs SET file_key = '', version = version + 1 "
                                    "WHERE id = $1 AND file_key = $2 AND status IN ('expired', 'failed')"};
// $3: the clock.
constexpr statement retire_key{"ee_retire_key", "INSERT INTO stale_files (job_id, stale_key, retired_at) "
                                                "VALUES ($1, $2, " EE_NOW(3) ") ON CONFLICT DO NOTHING"};
constexpr statement clear_stale_file{"ee_clear_stale_file",
                                     "DELETE FROM stale_files WHERE job_id = $1 AND stale_key = $2"};
// Moves the job's live file key to stale_files unless it is empty or $2.
constexpr statement retire_file{"ee_retire_file",
                                "INSERT INTO stale_files (job_id, stale_key, retired_at) "
                                "SELECT id, file_key, " EE_NOW(3) " FROM jobs "
                                "WHERE id = $1 AND file_key <> '' AND file_key <> $2 ON CONFLICT DO NOTHING"};

constexpr statement lock_job{"ee_lock_job", "SELECT " EE_PG_JOB_COLUMNS " FROM jobs WHERE id = $1 FOR UPDATE"};
constexpr statement expire_job{"ee_expire_job", "UPDATE jobs SET status = 'expired', updated_at = " EE_NOW(2)
                                                ", version = version + 1 WHERE id = $1 AND status = 'available'"};
constexpr statement regenerate{
    "ee_regenerate",
    "UPDATE jobs SET status = 'queued', attempt = 0, error_code = NULL, error_message = NULL, "
    "completed_at = NULL, expires_at = NULL, row_count = NULL, file_size = NULL, checksum = '', "
    "file_key = '', lease_owner = '', lease_expires_at = NULL, updated_at = " EE_NOW(2) ", "
    "version = version + 1 WHERE id = $1 RETURNING " EE_PG_JOB_COLUMNS};

// Prune, one batch per statement: first the account rows of the jobs it
// will delete, in account order (the lock order of
// requeue_expired_leases, so the two cannot deadlock), then at most $2 of
// those accounts' prunable jobs (one snapshot: the delete cannot reach an
// account it did not lock first, so its trigger touches only rows already
// held). Jobs another transaction holds are left for the next prune.
#define EE_PRUNABLE                                                                   \
    " status IN ('expired', 'failed') AND updated_at < $1 AND file_key = '' "         \
    "AND NOT EXISTS (SELECT 1 FROM stale_files WHERE job_id = jobs.id)"
constexpr statement prune_jobs{
    "ee_prune_jobs",
    "WITH accounts AS ("
    "  SELECT account_id FROM account_queue WHERE account_id IN ("
    "    SELECT account_id FROM jobs WHERE" EE_PRUNABLE " LIMIT $2)"
    "  ORDER BY account_id FOR UPDATE"
    "), doomed AS ("
    "  SELECT id AS doomed_id FROM jobs WHERE" EE_PRUNABLE
    "  AND account_id IN (SELECT account_id FROM accounts)"
    "  ORDER BY account_id, id LIMIT $2 FOR UPDATE SKIP LOCKED"
    ") DELETE FROM jobs USING doomed WHERE id = doomed_id"};
#undef EE_PRUNABLE
constexpr statement prune_keys{"ee_prune_keys", "DELETE FROM idempotency_keys WHERE created_at < $1"};
#undef EE_NOW
} // namespace sql

bool valid_schema_name(const std::string& s)
{
    if (s.empty() || s.size() > 63 || std::isdigit(static_cast<unsigned char>(s[0])))
        return false;
    for (char c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
            return false;
    return true;
}

std::string with_connect_timeout(const std::string& conninfo, std::chrono::seconds t)
{
    // A URI takes it as a query parameter, key=value strings as one more
    // pair. (libpq: the last one given wins.)
    const auto secs = std::to_string(std::max<std::chrono::seconds::rep>(t.count(), 2));
    const bool uri = conninfo.rfind("postgresql://", 0) == 0 || conninfo.rfind("postgres://", 0) == 0;
    if (!uri)
        return conninfo + " connect_timeout=" + secs;
    return conninfo + (conninfo.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=" + secs;
}

} // namespace

// ---------------------------------------------------------------------------

struct postgres_job_store::impl {
    pool connections;
    // TEST ONLY (advance_clock_for_testing): when frozen, the clock is
    // frozen_ms + shift_ms instead of now().
    std::atomic<bool> frozen{false};
    std::atomic<std::int64_t> clock_ms{0};
    std::mutex freeze_mutex;
    std::function<void(std::string_view)> log_failure;
    /// LISTEN/NOTIFY (nullptr: poll only). Destroyed before the pool.
    std::unique_ptr<wakeups> signals;

    impl(const postgres_job_store_options& o, const std::string& search_path)
        : connections(with_connect_timeout(o.conninfo, o.connect_timeout), check_conninfo(o.conninfo), search_path,
                      o.max_connections, o.acquire_timeout, o.prepared_statements && !o.transaction_pooling,
                      o.transaction_pooling),
          log_failure(o.log_failure)
    {
        if (o.notifications && !o.transaction_pooling)
            signals = std::make_unique<wakeups>(connections, notify_channel(o.schema), o.notify_interval,
                                                o.log_failure);
    }

    /// The NOTIFY channel of a schema (at most 63 bytes: longer names are
    /// cut, and two schemas sharing the first 50 bytes of their names only
    /// wake each other's engines for nothing).
    static std::string notify_channel(const std::string& schema)
    {
        return ("exportengine." + schema).substr(0, 63);
    }

    /// This store queued work or freed a slot (after the commit).
    void work_queued() noexcept
    {
        if (signals)
            signals->queued();
    }

    void failed(const char* what, const std::string& sqlstate) const noexcept
    {
        if (!log_failure)
            return;
        try {
            std::string line = "postgres_job_store: ";
            line += what;
            if (!sqlstate.empty())
                line += " (SQLSTATE " + sqlstate + ")";
            log_failure(line);
        } catch (...) {
            // A log that fails must not turn a reported failure into a throw.
        }
    }

    /// Runs `f(connection&)` on a pooled connection; refusals and failures
    /// become `ec`, with an empty result.
    template <class F>
    auto run(error_code& ec, F&& f) -> decltype(f(std::declval<connection&>()))
    {
        ec = {};
        try {
            auto c = connections.acquire();
            try {
                return f(*c);
            } catch (...) {
                c->rollback_quietly();
                throw;
            }
        } catch (const refusal& r) {
            ec = r.code;
        } catch (const pq_error& e) {
            ec = errc::store_failed;
            failed(e.what(), e.sqlstate);
        } catch (const std::exception& e) {
            ec = errc::store_failed;
            failed(e.what(), {});
        } catch (...) {
            ec = errc::store_failed;
            failed("unexpected failure", {});
        }
        if constexpr (!std::is_void_v<decltype(f(std::declval<connection&>()))>)
            return {};
    }

    /// The frozen test clock, or NULL: the database's now().
    [[nodiscard]] param clock() const
    {
        if (frozen.load())
            return std::to_string(clock_ms.load());
        return std::nullopt;
    }

    /// Opens a transaction and reads the store's clock in it (one round
    /// trip).
    timestamp begin(connection& c, const char* begin_sql = sql::begin)
    {
        const auto r = c.pipeline({command_step(begin_sql), run_step(sql::now, clock())});
        return from_ms(r[1].int64(0, 0));
    }

    static export_job load_existing(connection& c, std::string_view id)
    {
        const auto r = c.query(sql::job_by_id, id);
        if (r.rows() != 1)
            corrupt("job vanished");
        return read_job(r, 0);
    }

    static std::optional<export_job> load(connection& c, std::string_view id)
    {
        const auto r = c.query(sql::job_by_id, id);
        if (r.rows() == 0)
            return std::nullopt;
        return read_job(r, 0);
    }

    /// The job a fenced write returned, or a lease_lost refusal.
    static export_job fenced(const result& r)
    {
        if (r.rows() != 1)
            throw refusal{errc::lease_lost};
        return read_job(r, 0);
    }

    /// A fenced write (`sql` is a fenced UPDATE ... RETURNING, $4 the
    /// clock) or a lease_lost refusal.
    template <class... Args>
    static export_job fenced(connection& c, const statement& sql, std::string_view id, const job_lease& l,
                             const param& clock, const Args&... args)
    {
        return fenced(c.query(sql, id, std::string_view(l.owner), l.token, clock, args...));
    }

    static std::optional<export_job> claim_in(connection& c, const std::string& owner,
                                              std::chrono::milliseconds lease, int per_account_limit,
                                              const param& clock)
    {
        const auto r = c.query(sql::claim, std::int64_t{per_account_limit}, std::string_view(owner),
                               std::int64_t{lease.count()}, clock);
        if (r.rows() == 0)
            return std::nullopt;
        return read_job(r, 0);
    }

    static step complete_step(const completion_request& r, const param& clock)
    {
        const auto& c = r.result;
        return run_step(sql::complete, std::string_view(r.id), std::string_view(r.lease.owner), r.lease.token, clock,
                        c.row_count, c.file_size, std::string_view(c.checksum), std::string_view(c.file_key),
                        std::int64_t{(c.completed_at - r.now).count()}, std::int64_t{(c.expires_at - r.now).count()});
    }
};

postgres_job_store::postgres_job_store(const postgres_job_store_options& options)
{
    const auto fail_open = [](const std::string& why) {
        const error_code code = errc::store_failed;
        return std::system_error(std::error_code(code), "cannot open the PostgreSQL job store: " + why);
    };
    if (!valid_schema_name(options.schema))
        throw fail_open("the schema name must be 1 to 63 letters, digits or underscores, not starting with a digit");
    try {
        // The schema's name is checked above: quoting it is enough.
        impl_ = std::make_unique<impl>(options, "\"" + options.schema + "\"");
        auto c = impl_->connections.acquire();
        migrate(*c, options.schema);
    } catch (const newer_schema& n) {
        throw fail_open("schema '" + options.schema + "' is at version " + std::to_string(n.found)
                        + ", newer than this version of exportengine knows (" + std::to_string(latest_schema_version())
                        + "); upgrade exportengine");
    } catch (const pq_error& e) {
        // A connection error from libpq names host, port and user, never
        // the password; a statement error is the server's primary message.
        throw fail_open(e.what());
    } catch (const std::exception&) {
        throw fail_open("unexpected failure");
    }
}

postgres_job_store::~postgres_job_store() = default;

std::unique_ptr<store_watch> postgres_job_store::watch(std::function<void()> on_work)
{
    if (!impl_->signals)
        return nullptr;
    return impl_->signals->watch(std::move(on_work));
}

int postgres_job_store::latest_schema_version() noexcept { return pg_detail::latest_schema_version(); }

void postgres_job_store::advance_clock_for_testing(std::chrono::milliseconds by)
{
    std::lock_guard lock(impl_->freeze_mutex);
    if (!impl_->frozen.load()) {
        try {
            auto c = impl_->connections.acquire();
            impl_->clock_ms.store(c->query(sql::now, param{}).int64(0, 0));
        } catch (const std::exception&) {
            const error_code code = errc::store_failed;
            throw std::system_error(std::error_code(code), "cannot read the PostgreSQL job store's clock");
        }
        impl_->frozen.store(true);
    }
    impl_->clock_ms.fetch_add(by.count());
}

create_result postgres_job_store::create(const new_job& job, const std::optional<idempotency_key>& key,
                                         error_code& ec)
{
    auto created = impl_->run(ec, [&](connection& c) -> create_result {
        const auto clock = impl_->clock();
        const auto& q = job.request;
        const auto insert = run_step(sql::insert_job, std::string_view(job.id), job.account_id,
                                     std::string_view(to_string(q.type)), encode_filter(q.filter),
                                     std::string_view(to_string(q.format.compression)),
                                     std::int64_t{static_cast<unsigned char>(q.format.delimiter)}, q.format.bom,
                                     encode_metadata(q.metadata), clock);
        if (!key) // One statement, its own transaction.
            return {read_job(c.pipeline({insert})[0], 0), true};

        // Take the key's lock, then look it up (a statement of its own: its
        // snapshot is taken once the lock is held).
        auto looked_up = c.pipeline({command_step(sql::begin),
                                     run_step(sql::lock_key, job.account_id, std::string_view(key->key)),
                                     run_step(sql::find_key, job.account_id, std::string_view(key->key), clock,
                                              std::int64_t{(key->not_before - job.created_at).count()})});
        const auto& found = looked_up[2];
        if (found.rows() == 1 && found.boolean(0, 2)) {
            if (found.text(0, 0) != key->request_hash)
                throw refusal{errc::idempotency_key_reused};
            const auto r = c.pipeline({run_step(sql::job_by_id, found.text(0, 1)), command_step(sql::commit)});
            if (r[0].rows() != 1)
                corrupt("job vanished");
            return {read_job(r[0], 0), false};
        }
        // Unknown, or an older use: this create takes the key over.
        const auto r = c.pipeline({insert,
                                   run_step(sql::put_key, job.account_id, std::string_view(key->key),
                                            std::string_view(key->request_hash), std::string_view(job.id), clock),
                                   command_step(sql::commit)});
        return {read_job(r[0], 0), true};
    });
    if (!ec && created.created)
        impl_->work_queued();
    return created;
}

job_page postgres_job_store::list(std::int64_t account_id, std::int64_t page, std::int64_t limit, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) {
        job_page out;
        const bool valid = page >= 0 && limit > 0 && page <= (std::numeric_limits<std::int64_t>::max() / limit);
        const auto r = c.query(sql::list_page, account_id, valid ? limit : 0, valid ? page * limit : 0);
        if (r.rows() < 1 || r.columns() != job_column_count + 1)
            corrupt("list returned no counts");
        out.total = r.int64(0, job_column_count);
        if (!r.is_null(0, 0)) {
            out.jobs.reserve(static_cast<std::size_t>(r.rows()));
            for (int i = 0; i < r.rows(); ++i)
                out.jobs.push_back(read_job(r, i));
        }
        return out;
    });
}

std::optional<export_job> postgres_job_store::get(std::int64_t account_id, std::string_view id, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) {
        auto job = impl::load(c, id);
        if (job && job->account_id != account_id)
            job.reset();
        return job;
    });
}

std::optional<export_job> postgres_job_store::find(std::string_view id, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) { return impl::load(c, id); });
}

std::optional<export_job> postgres_job_store::claim(const std::string& owner, timestamp now, timestamp lease_until,
                                                    int per_account_limit, error_code& ec)
{
    // One statement, its own transaction.
    return impl_->run(ec, [&](connection& c) {
        return impl::claim_in(c, owner, lease_until - now, per_account_limit, impl_->clock());
    });
}

bool postgres_job_store::heartbeat(std::string_view id, const job_lease& l, timestamp now, timestamp lease_until,
                                   std::int64_t rows_so_far, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) {
        const auto r = c.pipeline({command_step(sql::begin), command_step(sql::relaxed),
                                   run_step(sql::heartbeat, id, std::string_view(l.owner), l.token, impl_->clock(),
                                            std::int64_t{(lease_until - now).count()}, rows_so_far),
                                   command_step(sql::commit)});
        return r[2].affected() == 1;
    });
}

std::optional<export_job> postgres_job_store::complete(std::string_view id, const job_lease& l,
                                                       const completion& result, timestamp now, error_code& ec)
{
    auto done = impl_->run(ec, [&](connection& c) -> std::optional<export_job> {
        const completion_request r{std::string(id), l, result, now, std::nullopt};
        return impl::fenced(c.pipeline({impl::complete_step(r, impl_->clock())})[0]);
    });
    if (done)
        impl_->work_queued(); // a slot of the account is free
    return done;
}

complete_result postgres_job_store::complete_and_claim(const completion_request& r, error_code& ec)
{
    auto out = impl_->run(ec, [&](connection& c) -> complete_result {
        complete_result out;
        if (!r.next) {
            out.completed = impl::fenced(c.pipeline({impl::complete_step(r, impl_->clock())})[0]);
            return out;
        }
        // One transaction, one round trip: the completion, then the claim
        // under a savepoint (its failure rolls back only itself), guarded
        // so that it claims nothing when the completion was refused.
        const auto& key = r.result.file_key;
        std::vector<result> done;
        try {
            done = c.pipeline({command_step(sql::begin), impl::complete_step(r, impl_->clock()),
                               command_step("SAVEPOINT claim_next"),
                               run_step(sql::claim_after, std::int64_t{r.next->per_account_limit},
                                        std::string_view(r.next->owner),
                                        std::int64_t{(r.next->lease_until - r.next->now).count()}, impl_->clock(),
                                        std::string_view(r.id), std::string_view(key)),
                               command_step("RELEASE claim_next"), command_step(sql::commit)});
        } catch (const pipeline_error& e) {
            if (e.step != 3)
                throw; // the transaction is rolled back: nothing happened
            // The claim failed: keep the completion (if it was made).
            impl_->failed(e.what(), e.sqlstate);
            c.exec("ROLLBACK TO claim_next");
            const auto kept = c.pipeline({run_step(sql::job_by_id, std::string_view(r.id)), command_step(sql::commit)});
            if (kept[0].rows() != 1)
                throw refusal{errc::lease_lost};
            auto job = read_job(kept[0], 0);
            if (job.status != export_status::available || job.file_key != key)
                throw refusal{errc::lease_lost};
            out.completed = std::move(job);
            out.claim_error = errc::store_failed;
            return out;
        }
        // Committed. A refused completion changed nothing and claimed
        // nothing (the claim's guard).
        out.completed = impl::fenced(done[1]);
        if (done[3].rows() == 1) {
            try {
                out.next = read_job(done[3], 0);
            } catch (const std::exception& e) {
                impl_->failed(e.what(), {});
                out.claim_error = errc::store_failed; // its lease runs out
            }
        }
        return out;
    });
    if (out.completed)
        impl_->work_queued();
    return out;
}

std::optional<export_job> postgres_job_store::fail(std::string_view id, const job_lease& l, const job_error& error,
                                                   timestamp /*now*/, error_code& ec)
{
    auto failed = impl_->run(ec, [&](connection& c) -> std::optional<export_job> {
        return impl::fenced(c, sql::fail, id, l, impl_->clock(), std::string_view(error.code),
                            std::string_view(error.message));
    });
    if (failed)
        impl_->work_queued();
    return failed;
}

std::optional<export_job> postgres_job_store::release(std::string_view id, const job_lease& l, timestamp /*now*/,
                                                      error_code& ec)
{
    auto released = impl_->run(ec, [&](connection& c) -> std::optional<export_job> {
        return impl::fenced(c, sql::requeue, id, l, impl_->clock(), std::int64_t{1});
    });
    if (released)
        impl_->work_queued();
    return released;
}

requeue_result postgres_job_store::requeue_expired_leases(timestamp /*now*/, int max_attempts,
                                                          const job_error& exhausted, error_code& ec)
{
    auto out = impl_->run(ec, [&](connection& c) {
        const timestamp own = impl_->begin(c);
        const param clock = std::to_string(to_ms(own));
        const auto due = c.query(sql::expired_leases, clock);
        requeue_result out;
        if (due.rows() == 0) {
            c.exec(sql::commit);
            return out;
        }
        out.jobs.reserve(static_cast<std::size_t>(due.rows()));
        for (int i = 0; i < due.rows(); ++i) {
            const auto id = due.text(i, 0);
            const job_lease lease{due.str(i, 2), due.int64(i, 3)};
            if (due.int64(i, 1) < max_attempts)
                out.jobs.push_back(impl::fenced(c, sql::requeue, id, lease, clock, std::int64_t{0}));
            else
                out.jobs.push_back(impl::fenced(c, sql::fail, id, lease, clock, std::string_view(exhausted.code),
                                                std::string_view(exhausted.message)));
            // The lost claim may have published its file before it died.
            c.query(sql::retire_key, id, std::string_view(export_file_key(out.jobs.back(), lease.token)), clock);
        }
        c.exec(sql::commit);
        return out;
    });
    if (!out.jobs.empty())
        impl_->work_queued();
    return out;
}

std::vector<export_job> postgres_job_store::expire_due(timestamp /*now*/, std::size_t limit, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) {
        const auto r = c.query(sql::expire_due, impl_->clock(), clamp_limit(limit));
        std::vector<export_job> out;
        out.reserve(static_cast<std::size_t>(r.rows()));
        for (int i = 0; i < r.rows(); ++i)
            out.push_back(read_job(r, i));
        // Earliest expiry first (RETURNING keeps no order).
        std::sort(out.begin(), out.end(), [](const export_job& a, const export_job& b) {
            return std::tie(a.expires_at, a.id) < std::tie(b.expires_at, b.id);
        });
        return out;
    });
}

std::vector<file_to_delete> postgres_job_store::files_to_delete(std::size_t limit, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) {
        const auto r = c.query(sql::files_to_delete, clamp_limit(limit));
        std::vector<file_to_delete> out;
        out.reserve(static_cast<std::size_t>(r.rows()));
        for (int i = 0; i < r.rows(); ++i)
            out.push_back({r.str(i, 0), r.str(i, 1)});
        return out;
    });
}

void postgres_job_store::forget_file(std::string_view job_id, std::string_view file_key, error_code& ec)
{
    impl_->run(ec, [&](connection& c) {
        if (file_key.empty())
            return;
        c.pipeline({command_step(sql::begin), run_step(sql::clear_live_file, job_id, file_key),
                    run_step(sql::clear_stale_file, job_id, file_key), command_step(sql::commit)});
    });
}

std::optional<regenerate_result> postgres_job_store::regenerate(std::int64_t account_id, std::string_view id,
                                                                timestamp now,
                                                                const std::optional<idempotency_key>& key,
                                                                error_code& ec)
{
    auto out = impl_->run(ec, [&](connection& c) -> std::optional<regenerate_result> {
        const timestamp own = impl_->begin(c);
        const param clock = std::to_string(to_ms(own));
        if (key)
            c.query(sql::lock_key, account_id, std::string_view(key->key));
        const auto locked = c.query(sql::lock_job, id);
        if (locked.rows() == 0)
            throw refusal{errc::not_found};
        auto job = read_job(locked, 0);
        if (job.account_id != account_id)
            throw refusal{errc::not_found};
        if (key) {
            const auto r = c.query(sql::find_key, account_id, std::string_view(key->key), clock,
                                   std::int64_t{(key->not_before - now).count()});
            if (r.rows() == 1 && r.boolean(0, 2)) {
                if (r.text(0, 0) != key->request_hash || r.text(0, 1) != id)
                    throw refusal{errc::idempotency_key_reused};
                c.exec(sql::commit);
                return regenerate_result{std::move(job), false};
            }
        }
        if (job.status == export_status::available && job.effective_status(own) == export_status::expired) {
            // available -> queued is no legal transition: record the expiry
            // the clock already implies, then regenerate from expired.
            require_legal(job.status, export_status::expired);
            if (c.query(sql::expire_job, id, clock).affected() != 1)
                corrupt("expiry lost its row");
            job.status = export_status::expired;
        }
        if (job.status != export_status::expired && job.status != export_status::failed)
            throw refusal{errc::export_not_expired};
        require_legal(job.status, export_status::queued);
        c.query(sql::retire_file, id, std::string_view{}, clock);
        const auto r = c.query(sql::regenerate, id, clock);
        if (r.rows() != 1)
            corrupt("regenerate lost its row");
        auto regenerated = read_job(r, 0);
        if (key)
            c.query(sql::put_key, account_id, std::string_view(key->key), std::string_view(key->request_hash), id,
                    clock);
        c.exec(sql::commit);
        return regenerate_result{std::move(regenerated), true};
    });
    if (!ec && out && out->regenerated)
        impl_->work_queued();
    return out;
}

std::int64_t postgres_job_store::prune(timestamp older_than, error_code& ec)
{
    // Batches, each its own short transaction: a large backlog never holds
    // many accounts' rows (which completions wait for and claims skip) for
    // long.
    constexpr std::int64_t batch = 500;
    return impl_->run(ec, [&](connection& c) {
        std::int64_t pruned = 0;
        for (;;) {
            const auto n = c.query(sql::prune_jobs, to_ms(older_than), batch).affected();
            pruned += n;
            if (n < batch)
                break;
        }
        c.query(sql::prune_keys, to_ms(older_than));
        return pruned;
    });
}

} // namespace exportengine::adapters
