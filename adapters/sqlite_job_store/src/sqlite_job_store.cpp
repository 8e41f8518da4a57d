#include <exportengine/adapters/sqlite_job_store.hpp>

#include "store_impl.hpp"

#include <exportengine/error.hpp>

#include <SQLiteCpp/Exception.h>
#include <sqlite3.h>

#include <exception>
#include <limits>
#include <system_error>

namespace exportengine::adapters {

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
