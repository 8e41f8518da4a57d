// The SQLite job store's statements: the SQL texts, binding, and a cached
// statement in use. Private to the adapter.
#pragma once

#include "common.hpp"

#include <exportengine/time_source.hpp>

#include <SQLiteCpp/Column.h>
#include <SQLiteCpp/Statement.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace exportengine::adapters::sqlite_store_detail {

inline void bind(SQLite::Statement& s, int i, std::string_view v) { s.bind(i, std::string(v)); }
inline void bind(SQLite::Statement& s, int i, std::int64_t v) { s.bind(i, v); }
inline void bind(SQLite::Statement& s, int i, timestamp t) { s.bind(i, to_ms(t)); }

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

// The SQL. Each text is prepared once per connection (keyed by its address:
// each is defined once, in statements.cpp).
namespace sql {
extern const char* const begin_immediate;
extern const char* const savepoint_write;
extern const char* const release_write;
extern const char* const rollback_write;
extern const char* const savepoint_claim;
extern const char* const release_claim;
extern const char* const rollback_claim;
extern const char* const sync_normal;
extern const char* const sync_full;
extern const char* const begin_read;
extern const char* const commit;
extern const char* const job_by_id;
extern const char* const insert_job;
extern const char* const find_key;
extern const char* const put_key;
extern const char* const count_account;
extern const char* const page_account;
extern const char* const pick_account;
extern const char* const pick_job;
extern const char* const take_turn;
extern const char* const claim_job;
extern const char* const heartbeat;
extern const char* const complete;
extern const char* const fail;
extern const char* const requeue;
extern const char* const expired_leases;
extern const char* const due_to_expire;
extern const char* const expire_job;
extern const char* const files_to_delete;
extern const char* const clear_live_file;
extern const char* const retire_key;
extern const char* const clear_stale_file;
extern const char* const retire_file;
extern const char* const regenerate;
extern const char* const prune_jobs;
extern const char* const prune_keys;
} // namespace sql

} // namespace exportengine::adapters::sqlite_store_detail
