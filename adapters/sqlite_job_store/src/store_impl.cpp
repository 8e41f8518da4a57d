#include "store_impl.hpp"

#include "schema.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <stdexcept>

namespace exportengine::adapters {

sqlite_job_store::impl::impl(const std::string& path, const sqlite_job_store_options& options)
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

void sqlite_job_store::impl::migrate()
{
    const int latest = latest_schema_version();
    if (db_.execAndGet("PRAGMA user_version").getInt() == latest)
        return;
    // Re-read under the write lock: another process may be migrating.
    write_transaction tx(*this);
    const int version = db_.execAndGet("PRAGMA user_version").getInt();
    if (version < 0 || version > latest)
        throw unknown_schema{};
    migrate_from(db_, version);
    db_.exec("PRAGMA user_version = " + std::to_string(latest));
    tx.commit();
}

// One create's statements, inside the caller's write transaction.
create_result sqlite_job_store::impl::create_in(const new_job& job, const std::optional<idempotency_key>& key)
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
                   std::int64_t{r.format.bom ? 1 : 0}, std::string_view(encode_metadata(r.metadata)),
                   job.created_at);
    if (key)
        execute(sql::put_key, job.account_id, std::string_view(key->key),
                       std::string_view(key->request_hash), std::string_view(job.id),
                       job.created_at);
    return {load_existing(job.id), true};
}

void sqlite_job_store::impl::commit_batch(const std::vector<pending_write*>& batch)
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
std::optional<export_job> sqlite_job_store::impl::claim_in(const std::string& owner, timestamp now, timestamp lease_until,
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
export_job sqlite_job_store::impl::complete_in(std::string_view id, const job_lease& l, const completion& result, timestamp now)
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

void sqlite_job_store::impl::expire(const export_job& job, timestamp now)
{
    require_legal(job.status, export_status::expired);
    if (execute(sql::expire_job, std::string_view(job.id), now) != 1)
        corrupt("expiry lost its row");
}

} // namespace exportengine::adapters
