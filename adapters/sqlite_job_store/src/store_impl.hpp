// The SQLite job store's connection and the statements every operation
// shares: transactions, the operation wrapper, fenced writes, the bodies of
// create, claim and complete. Private to the adapter.
#pragma once

#include <exportengine/adapters/sqlite_job_store.hpp>

#include "common.hpp"
#include "group_commit.hpp"
#include "job_codec.hpp"
#include "statements.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace exportengine::adapters {

using namespace sqlite_store_detail;
using boost::system::error_code;

struct sqlite_job_store::impl {
    // db_ before statements_: statements are finalized before the connection
    // closes.
    SQLite::Database db_;
    std::unordered_map<const char*, std::unique_ptr<SQLite::Statement>> statements_;
    std::mutex mutex_;

    impl(const std::string& path, const sqlite_job_store_options& options);

    // Creates or migrates the schema (PRAGMA user_version).
    void migrate();

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
    // sequential log. Every state change (contract §2: create, claim, complete,
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
    create_result create_in(const new_job& job, const std::optional<idempotency_key>& key);

    // Creates go through the group commit (group_commit.hpp); the workers'
    // claims and completions keep their own transactions, since making a
    // worker wait for company slowed the jobs/s benchmark.
    group_commit batch_{[this](const std::vector<pending_write*>& batch) { commit_batch(batch); }};

    // Runs `f` (statements only, no transaction of its own) in the next
    // group commit; maps a failure to `ec` as run() does.
    template <class F>
    auto batched(error_code& ec, F&& f) -> std::invoke_result_t<F&>
    {
        using result = std::invoke_result_t<F&>;
        std::optional<result> out;
        pending_write op;
        op.body = [&] { out.emplace(f()); };
        batch_.run(op);
        ec = op.ec;
        if (ec || !out)
            return result{};
        return std::move(*out);
    }

    // Commits `batch` in one transaction, each write under its own
    // savepoint (group_commit's commit step).
    void commit_batch(const std::vector<pending_write*>& batch);

    // The claim's statements, inside the caller's write transaction.
    std::optional<export_job> claim_in(const std::string& owner, timestamp now, timestamp lease_until,
                                       int per_account_limit);

    // The completion's statements, inside the caller's write transaction;
    // throws a lease_lost refusal when `l` is not the current lease.
    export_job complete_in(std::string_view id, const job_lease& l, const completion& result, timestamp now);

    void expire(const export_job& job, timestamp now);
};

} // namespace exportengine::adapters
