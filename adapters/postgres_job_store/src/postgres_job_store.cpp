#include <exportengine/adapters/postgres_job_store.hpp>

#include "job_codec.hpp"
#include "pq.hpp"
#include "schema.hpp"

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
// The transaction and the store's clock in one round trip.
const char* const begin_clock = "BEGIN; SELECT floor(extract(epoch FROM now()) * 1000)::bigint";
const char* const begin_relaxed_clock =
    "BEGIN; SET LOCAL synchronous_commit = off; SELECT floor(extract(epoch FROM now()) * 1000)::bigint";
const char* const begin_snapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
const char* const clock = "SELECT floor(extract(epoch FROM now()) * 1000)::bigint";

const char* const job_by_id = "SELECT " EE_PG_JOB_COLUMNS " FROM jobs WHERE id = $1";

const char* const insert_job =
    "INSERT INTO jobs (id, account_id, type, filter_json, compression, delimiter, bom, "
    "metadata_json, status, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $9) RETURNING " EE_PG_JOB_COLUMNS;
// Two uses of one new key at once: the second waits for the first's commit
// and then finds its key (instead of both creating a job).
const char* const lock_key =
    "SELECT pg_advisory_xact_lock(hashtextextended('exportengine.key:' || $1 || ':' || $2, 0))";
const char* const find_key =
    "SELECT request_hash, job_id, created_at FROM idempotency_keys WHERE account_id = $1 AND \"key\" = $2";
const char* const put_key =
    "INSERT INTO idempotency_keys (account_id, \"key\", request_hash, job_id, created_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, \"key\") DO UPDATE SET "
    "request_hash = EXCLUDED.request_hash, job_id = EXCLUDED.job_id, created_at = EXCLUDED.created_at";

const char* const count_account = "SELECT COALESCE((SELECT total FROM account_queue WHERE account_id = $1), 0)";
const char* const page_account = "SELECT " EE_PG_JOB_COLUMNS " FROM jobs WHERE account_id = $1 "
                                 "ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3";

// The claim: the account first (the first one by the fairness order whose
// row no one else holds, locked until commit), then its oldest queued job
// (locked too), then the compare-and-set. $1 limit, $2 owner, $3 lease end,
// $4 now.
const char* const claim =
    "WITH account AS ("
    "  SELECT account_id FROM account_queue"
    "  WHERE queued > 0 AND running < $1"
    "  ORDER BY running, last_claim, account_id"
    "  LIMIT 1 FOR UPDATE SKIP LOCKED"
    "), candidate AS ("
    "  SELECT id AS candidate_id FROM jobs"
    "  WHERE status = 'queued' AND account_id = (SELECT account_id FROM account)"
    "  ORDER BY created_at, id"
    "  LIMIT 1 FOR UPDATE SKIP LOCKED"
    ") "
    "UPDATE jobs SET status = 'processing', attempt = attempt + 1, lease_owner = $2, "
    "lease_token = lease_token + 1, lease_expires_at = $3, updated_at = $4, row_count = 0, "
    "error_code = NULL, error_message = NULL, version = version + 1 "
    "FROM candidate WHERE id = candidate_id AND status = 'queued' "
    "RETURNING " EE_PG_JOB_COLUMNS;
const char* const take_turn =
    "UPDATE account_queue SET last_claim = nextval('claim_turns') WHERE account_id = $1";

// The fenced writes: $1 id, $2 lease owner, $3 lease token, $4 now.
#define EE_FENCE " WHERE id = $1 AND status = 'processing' AND lease_owner = $2 AND lease_token = $3"
const char* const heartbeat =
    "UPDATE jobs SET lease_expires_at = $5, row_count = $6, updated_at = $4" EE_FENCE;
const char* const complete =
    "UPDATE jobs SET status = 'available', row_count = $5, file_size = $6, checksum = $7, "
    "file_key = $8, completed_at = $9, expires_at = $10, lease_owner = '', "
    "lease_expires_at = NULL, error_code = NULL, error_message = NULL, updated_at = $4, "
    "version = version + 1" EE_FENCE " RETURNING " EE_PG_JOB_COLUMNS;
const char* const fail =
    "UPDATE jobs SET status = 'failed', error_code = $5, error_message = $6, row_count = NULL, "
    "lease_owner = '', lease_expires_at = NULL, updated_at = $4, version = version + 1" EE_FENCE
    " RETURNING " EE_PG_JOB_COLUMNS;
// $5: 1 gives the attempt back (a graceful stop), 0 keeps it (a lost lease).
const char* const requeue =
    "UPDATE jobs SET status = 'queued', attempt = attempt - $5, row_count = NULL, "
    "lease_owner = '', lease_expires_at = NULL, updated_at = $4, version = version + 1" EE_FENCE
    " RETURNING " EE_PG_JOB_COLUMNS;
#undef EE_FENCE

// Locked in account order: two requeuers lock account_queue rows (through
// the trigger) in the same order, so they cannot deadlock.
const char* const expired_leases =
    "SELECT id, attempt, lease_owner, lease_token FROM jobs "
    "WHERE status = 'processing' AND lease_expires_at < $1 ORDER BY account_id, id "
    "FOR UPDATE SKIP LOCKED";

const char* const expire_due =
    "WITH due AS ("
    "  SELECT id AS due_id FROM jobs WHERE status = 'available' AND expires_at <= $1"
    "  ORDER BY expires_at, id LIMIT $2 FOR UPDATE SKIP LOCKED"
    ") "
    "UPDATE jobs SET status = 'expired', updated_at = $1, version = version + 1 "
    "FROM due WHERE id = due_id RETURNING " EE_PG_JOB_COLUMNS;

const char* const files_to_delete =
    "(SELECT id, file_key FROM jobs WHERE status IN ('expired', 'failed') AND file_key <> '') "
    "UNION ALL "
    "(SELECT job_id, stale_key FROM stale_files) "
    "LIMIT $1";
const char* const clear_live_file =
    "UPDATE jobs SET file_key = '', version = version + 1 "
    "WHERE id = $1 AND file_key = $2 AND status IN ('expired', 'failed')";
const char* const retire_key =
    "INSERT INTO stale_files (job_id, stale_key, retired_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const char* const clear_stale_file = "DELETE FROM stale_files WHERE job_id = $1 AND stale_key = $2";
// Moves the job's live file key to stale_files unless it is empty or $2.
const char* const retire_file =
    "INSERT INTO stale_files (job_id, stale_key, retired_at) "
    "SELECT id, file_key, $3 FROM jobs WHERE id = $1 AND file_key <> '' AND file_key <> $2 "
    "ON CONFLICT DO NOTHING";

const char* const lock_job = "SELECT " EE_PG_JOB_COLUMNS " FROM jobs WHERE id = $1 FOR UPDATE";
const char* const expire_job =
    "UPDATE jobs SET status = 'expired', updated_at = $2, version = version + 1 "
    "WHERE id = $1 AND status = 'available'";
const char* const regenerate =
    "UPDATE jobs SET status = 'queued', attempt = 0, error_code = NULL, error_message = NULL, "
    "completed_at = NULL, expires_at = NULL, row_count = NULL, file_size = NULL, checksum = '', "
    "file_key = '', lease_owner = '', lease_expires_at = NULL, updated_at = $2, "
    "version = version + 1 WHERE id = $1 RETURNING " EE_PG_JOB_COLUMNS;

// Jobs another transaction holds are left for the next prune.
const char* const prune_jobs =
    "DELETE FROM jobs WHERE id IN ("
    "  SELECT id FROM jobs WHERE status IN ('expired', 'failed') AND updated_at < $1"
    "  AND file_key = '' AND NOT EXISTS (SELECT 1 FROM stale_files WHERE job_id = jobs.id)"
    "  ORDER BY account_id, id FOR UPDATE SKIP LOCKED)";
const char* const prune_keys = "DELETE FROM idempotency_keys WHERE created_at < $1";
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

    impl(const postgres_job_store_options& o, const std::string& search_path)
        : connections(with_connect_timeout(o.conninfo, o.connect_timeout), check_conninfo(o.conninfo), search_path,
                      o.max_connections, o.acquire_timeout),
          log_failure(o.log_failure)
    {
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

    /// The store's clock inside the transaction `begin` opens.
    timestamp begin(connection& c, const char* begin_sql = sql::begin_clock)
    {
        const auto r = c.exec(begin_sql);
        if (frozen.load())
            return from_ms(clock_ms.load());
        return from_ms(r.int64(0, 0));
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

    /// `sql` (a fenced UPDATE ... RETURNING) or a lease_lost refusal.
    template <class... Args>
    static export_job fenced(connection& c, const char* sql, std::string_view id, const job_lease& l,
                             timestamp now, const Args&... args)
    {
        const auto r = c.query(sql, id, std::string_view(l.owner), l.token, to_ms(now), args...);
        if (r.rows() != 1)
            throw refusal{errc::lease_lost};
        return read_job(r, 0);
    }

    static std::optional<export_job> claim_in(connection& c, const std::string& owner, timestamp now,
                                              timestamp lease_until, int per_account_limit)
    {
        const auto r = c.query(sql::claim, std::int64_t{per_account_limit}, std::string_view(owner),
                               to_ms(lease_until), to_ms(now));
        if (r.rows() == 0)
            return std::nullopt;
        auto job = read_job(r, 0);
        c.query(sql::take_turn, job.account_id);
        // The previous claim's file may exist (it published, then lost its
        // lease): record it for the sweep with the claim.
        if (job.lease.token > 1)
            c.query(sql::retire_key, std::string_view(job.id),
                    std::string_view(export_file_key(job, job.lease.token - 1)), to_ms(now));
        return job;
    }

    static export_job complete_in(connection& c, std::string_view id, const job_lease& l, const completion& result,
                                  timestamp now, timestamp caller_now)
    {
        // A different key already on the job would be overwritten: keep it
        // for the sweeper. The new key is live, so it is stale no more.
        // (Both undone by the rollback if the lease turns out to be lost.)
        const std::string_view key = result.file_key;
        c.query(sql::retire_file, id, key, to_ms(now));
        c.query(sql::clear_stale_file, id, key);
        return fenced(c, sql::complete, id, l, now, result.row_count, result.file_size,
                      std::string_view(result.checksum), key, to_ms(now + (result.completed_at - caller_now)),
                      to_ms(now + (result.expires_at - caller_now)));
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

int postgres_job_store::latest_schema_version() noexcept { return pg_detail::latest_schema_version(); }

void postgres_job_store::advance_clock_for_testing(std::chrono::milliseconds by)
{
    std::lock_guard lock(impl_->freeze_mutex);
    if (!impl_->frozen.load()) {
        try {
            auto c = impl_->connections.acquire();
            impl_->clock_ms.store(c->exec(sql::clock).int64(0, 0));
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
    return impl_->run(ec, [&](connection& c) -> create_result {
        const timestamp now = impl_->begin(c);
        if (key) {
            c.query(sql::lock_key, job.account_id, std::string_view(key->key));
            const auto r = c.query(sql::find_key, job.account_id, std::string_view(key->key));
            const timestamp not_before = now + (key->not_before - job.created_at);
            if (r.rows() == 1 && r.int64(0, 2) >= to_ms(not_before)) {
                if (r.text(0, 0) != key->request_hash)
                    throw refusal{errc::idempotency_key_reused};
                auto existing = impl::load_existing(c, r.text(0, 1));
                c.exec("COMMIT");
                return {std::move(existing), false};
            }
            // Unknown, or an older use: this create takes the key over.
        }
        const auto& q = job.request;
        const auto r = c.query(sql::insert_job, std::string_view(job.id), job.account_id,
                               std::string_view(to_string(q.type)), encode_filter(q.filter),
                               std::string_view(to_string(q.format.compression)),
                               std::int64_t{static_cast<unsigned char>(q.format.delimiter)}, q.format.bom,
                               encode_metadata(q.metadata), to_ms(now));
        auto created = read_job(r, 0);
        if (key)
            c.query(sql::put_key, job.account_id, std::string_view(key->key), std::string_view(key->request_hash),
                    std::string_view(job.id), to_ms(now));
        c.exec("COMMIT");
        return {std::move(created), true};
    });
}

job_page postgres_job_store::list(std::int64_t account_id, std::int64_t page, std::int64_t limit, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) {
        job_page out;
        c.exec(sql::begin_snapshot);
        out.total = c.query(sql::count_account, account_id).int64(0, 0);
        if (page >= 0 && limit > 0 && page <= (std::numeric_limits<std::int64_t>::max() / limit)) {
            const auto r = c.query(sql::page_account, account_id, limit, page * limit);
            out.jobs.reserve(static_cast<std::size_t>(r.rows()));
            for (int i = 0; i < r.rows(); ++i)
                out.jobs.push_back(read_job(r, i));
        }
        c.exec("COMMIT");
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
    return impl_->run(ec, [&](connection& c) -> std::optional<export_job> {
        const timestamp own = impl_->begin(c);
        auto job = impl::claim_in(c, owner, own, own + (lease_until - now), per_account_limit);
        c.exec(job ? "COMMIT" : "ROLLBACK");
        return job;
    });
}

bool postgres_job_store::heartbeat(std::string_view id, const job_lease& l, timestamp now, timestamp lease_until,
                                   std::int64_t rows_so_far, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) {
        const timestamp own = impl_->begin(c, sql::begin_relaxed_clock);
        const auto r = c.query(sql::heartbeat, id, std::string_view(l.owner), l.token, to_ms(own),
                               to_ms(own + (lease_until - now)), rows_so_far);
        c.exec("COMMIT");
        return r.affected() == 1;
    });
}

std::optional<export_job> postgres_job_store::complete(std::string_view id, const job_lease& l,
                                                       const completion& result, timestamp now, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) -> std::optional<export_job> {
        const timestamp own = impl_->begin(c);
        auto job = impl::complete_in(c, id, l, result, own, now);
        c.exec("COMMIT");
        return job;
    });
}

complete_result postgres_job_store::complete_and_claim(const completion_request& r, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) -> complete_result {
        complete_result out;
        const timestamp own = impl_->begin(c);
        out.completed = impl::complete_in(c, r.id, r.lease, r.result, own, r.now);
        if (r.next) {
            // A failing claim must not take the completion with it.
            c.exec("SAVEPOINT claim_next");
            try {
                out.next = impl::claim_in(c, r.next->owner, own, own + (r.next->lease_until - r.next->now),
                                          r.next->per_account_limit);
                c.exec("RELEASE claim_next");
            } catch (const refusal& e) {
                out.claim_error = e.code;
            } catch (const std::exception&) {
                out.claim_error = errc::store_failed;
            }
            if (out.claim_error) {
                out.next.reset();
                c.exec("ROLLBACK TO claim_next");
            }
        }
        c.exec("COMMIT");
        return out;
    });
}

std::optional<export_job> postgres_job_store::fail(std::string_view id, const job_lease& l, const job_error& error,
                                                   timestamp /*now*/, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) -> std::optional<export_job> {
        const timestamp own = impl_->begin(c);
        auto job = impl::fenced(c, sql::fail, id, l, own, std::string_view(error.code),
                                std::string_view(error.message));
        c.exec("COMMIT");
        return job;
    });
}

std::optional<export_job> postgres_job_store::release(std::string_view id, const job_lease& l, timestamp /*now*/,
                                                      error_code& ec)
{
    return impl_->run(ec, [&](connection& c) -> std::optional<export_job> {
        const timestamp own = impl_->begin(c);
        auto job = impl::fenced(c, sql::requeue, id, l, own, std::int64_t{1});
        c.exec("COMMIT");
        return job;
    });
}

requeue_result postgres_job_store::requeue_expired_leases(timestamp /*now*/, int max_attempts,
                                                          const job_error& exhausted, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) {
        const timestamp own = impl_->begin(c);
        const auto due = c.query(sql::expired_leases, to_ms(own));
        requeue_result out;
        out.jobs.reserve(static_cast<std::size_t>(due.rows()));
        for (int i = 0; i < due.rows(); ++i) {
            const auto id = due.text(i, 0);
            const job_lease lease{due.str(i, 2), due.int64(i, 3)};
            if (due.int64(i, 1) < max_attempts)
                out.jobs.push_back(impl::fenced(c, sql::requeue, id, lease, own, std::int64_t{0}));
            else
                out.jobs.push_back(impl::fenced(c, sql::fail, id, lease, own, std::string_view(exhausted.code),
                                                std::string_view(exhausted.message)));
            // The lost claim may have published its file before it died.
            c.query(sql::retire_key, id, std::string_view(export_file_key(out.jobs.back(), lease.token)),
                    to_ms(own));
        }
        c.exec("COMMIT");
        return out;
    });
}

std::vector<export_job> postgres_job_store::expire_due(timestamp /*now*/, std::size_t limit, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) {
        const timestamp own = impl_->begin(c);
        const auto r = c.query(sql::expire_due, to_ms(own), clamp_limit(limit));
        std::vector<export_job> out;
        out.reserve(static_cast<std::size_t>(r.rows()));
        for (int i = 0; i < r.rows(); ++i)
            out.push_back(read_job(r, i));
        c.exec("COMMIT");
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
        c.exec("BEGIN");
        c.query(sql::clear_live_file, job_id, file_key);
        c.query(sql::clear_stale_file, job_id, file_key);
        c.exec("COMMIT");
    });
}

std::optional<regenerate_result> postgres_job_store::regenerate(std::int64_t account_id, std::string_view id,
                                                                timestamp now,
                                                                const std::optional<idempotency_key>& key,
                                                                error_code& ec)
{
    return impl_->run(ec, [&](connection& c) -> std::optional<regenerate_result> {
        const timestamp own = impl_->begin(c);
        if (key)
            c.query(sql::lock_key, account_id, std::string_view(key->key));
        const auto locked = c.query(sql::lock_job, id);
        if (locked.rows() == 0)
            throw refusal{errc::not_found};
        auto job = read_job(locked, 0);
        if (job.account_id != account_id)
            throw refusal{errc::not_found};
        if (key) {
            const auto r = c.query(sql::find_key, account_id, std::string_view(key->key));
            const timestamp not_before = own + (key->not_before - now);
            if (r.rows() == 1 && r.int64(0, 2) >= to_ms(not_before)) {
                if (r.text(0, 0) != key->request_hash || r.text(0, 1) != id)
                    throw refusal{errc::idempotency_key_reused};
                c.exec("COMMIT");
                return regenerate_result{std::move(job), false};
            }
        }
        if (job.status == export_status::available && job.effective_status(own) == export_status::expired) {
            // available -> queued is no legal transition: record the expiry
            // the clock already implies, then regenerate from expired.
            require_legal(job.status, export_status::expired);
            if (c.query(sql::expire_job, id, to_ms(own)).affected() != 1)
                corrupt("expiry lost its row");
            job.status = export_status::expired;
        }
        if (job.status != export_status::expired && job.status != export_status::failed)
            throw refusal{errc::export_not_expired};
        require_legal(job.status, export_status::queued);
        c.query(sql::retire_file, id, std::string_view{}, to_ms(own));
        const auto r = c.query(sql::regenerate, id, to_ms(own));
        if (r.rows() != 1)
            corrupt("regenerate lost its row");
        auto regenerated = read_job(r, 0);
        if (key)
            c.query(sql::put_key, account_id, std::string_view(key->key), std::string_view(key->request_hash), id,
                    to_ms(own));
        c.exec("COMMIT");
        return regenerate_result{std::move(regenerated), true};
    });
}

std::int64_t postgres_job_store::prune(timestamp older_than, error_code& ec)
{
    return impl_->run(ec, [&](connection& c) {
        c.exec("BEGIN");
        const std::int64_t jobs = c.query(sql::prune_jobs, to_ms(older_than)).affected();
        c.query(sql::prune_keys, to_ms(older_than));
        c.exec("COMMIT");
        return jobs;
    });
}

} // namespace exportengine::adapters
