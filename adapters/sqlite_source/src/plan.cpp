// A plan: its lanes' connections, all in a read transaction on one snapshot,
// and its slices.
//
// One lane (one reader asked for, an export driven by its ids, or a writer
// that kept committing while the lanes started): one connection, one
// statement, one slice — the export's whole query, one snapshot.
//
// Several lanes: the export's key space is cut into consecutive slices of
// `parallel_slice_rows` rows, found on the export's own index as they are
// handed out (a `LIMIT 1 OFFSET n` walk of the covering index from the last
// slice's end, on the claiming lane's connection). The lanes' connections
// start their read transactions one after another; `PRAGMA data_version`
// on another connection, read before the first and after the last started,
// shows whether a commit landed in between — if none did, all the lanes read
// the same snapshot. If commits keep landing (5 tries), the plan falls back
// to one lane, which is always one snapshot. (Debian's SQLite is built
// without SQLITE_ENABLE_SNAPSHOT: sqlite3_snapshot_open is not there to
// share a snapshot directly.)
#include "sqlite_common.hpp"

#include <algorithm>
#include <vector>

namespace exportengine::adapters::sqlite_detail {

namespace {

struct lane_conn {
    std::optional<SQLite::Database> db;
    stmt_ptr whole;             // one lane: the export's query
    stmt_ptr slice_stmts[2][2]; // several: a slice's rows [has low][has high]
    stmt_ptr key_stmts[2];      // several: a slice's end [has low]
    sqlite3* handle() { return db->getHandle(); }
};

class sqlite_plan final : public export_plan {
public:
    sqlite_plan(std::string path, bound_query q, export_type type, std::size_t slice_rows)
        : path_(std::move(path)), query_(std::move(q)), type_(type),
          slice_rows_(std::max<std::size_t>(slice_rows, 1)), next_low_(query_.low)
    {
    }

    ~sqlite_plan() override
    {
        for (auto& l : lanes_) {
            l.whole.reset();
            for (auto& row : l.slice_stmts)
                for (auto& s : row)
                    s.reset();
            for (auto& s : l.key_stmts)
                s.reset();
            if (l.db)
                end_read(l.handle());
        }
    }

    /// Opens the lanes (several when `lanes` > 1 and the export splits);
    /// false with `err` set on failure.
    bool start(std::size_t lanes, const sqlite_data_source_options& o, source_error& err) noexcept
    {
        if (query_.sql.empty()) {
            err = {make_error_code(errc::source_schema), "sqlite source: no query for this export type and filter"};
            return false;
        }
        if (lanes > 1 && !query_.key_select.empty()) {
            bool busy = false;
            if (start_many(lanes, o, busy, err))
                return true;
            if (!busy)
                return false;
            // Commits kept landing while the lanes started: one lane is one
            // snapshot whatever the writer does.
        }
        return start_one(o, err);
    }

    std::size_t lanes() const noexcept override { return lanes_.size(); }

    plan_consistency consistency() const noexcept override
    {
        return lanes_.size() > 1 ? plan_consistency::shared_snapshot : plan_consistency::single_reader;
    }

    bool next_slice(std::size_t lane, slice& out, source_error& err) override
    {
        if (done_)
            return false;
        out = slice{};
        out.index = next_index_++;
        if (single_) {
            done_ = true;
            return true;
        }
        // Its high bound is the key `slice_rows_` rows on from its low bound,
        // found on the index; none: the export's own end.
        lane_conn& l = lanes_[lane];
        sqlite3_stmt* s = l.key_stmts[next_low_ ? 1 : 0].get();
        out.low = next_low_;
        if (bind_params(s, query_, next_low_, query_.high, static_cast<std::int64_t>(slice_rows_)) != SQLITE_OK) {
            err = connection_error(l.handle(), "bind", path_);
            return false;
        }
        const int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            slice_key k;
            if (query_.text_key) {
                const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
                k.text.assign(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(s, 0)));
                k.id = sqlite3_column_int64(s, 1);
            } else {
                k.id = sqlite3_column_int64(s, 0);
            }
            out.high = k;
            next_low_ = std::move(k);
        } else if (rc == SQLITE_DONE) {
            out.high = query_.high;
            done_ = true;
        } else {
            err = connection_error(l.handle(), "step", path_);
            sqlite3_reset(s);
            return false;
        }
        sqlite3_reset(s);
        return true;
    }

    std::unique_ptr<row_cursor> open(std::size_t lane, const slice& s, source_error& err) override
    {
        lane_conn& l = lanes_.at(lane);
        if (single_)
            return make_cursor(l.handle(), l.whole.get(), type_, path_);
        sqlite3_stmt* st = l.slice_stmts[s.low ? 1 : 0][s.high ? 1 : 0].get();
        if (bind_params(st, query_, s.low, s.high, 0) != SQLITE_OK) {
            err = connection_error(l.handle(), "bind", path_);
            return nullptr;
        }
        return make_cursor(l.handle(), st, type_, path_);
    }

private:
    bool start_one(const sqlite_data_source_options& o, source_error& err) noexcept
    {
        lanes_.clear();
        lanes_.resize(1);
        single_ = true;
        lane_conn& l = lanes_[0];
        if (!open_connection(path_, o.busy_timeout, l.db, err) || !begin_read(l.handle(), o.mmap_size, path_, err))
            return false;
        l.whole = prepare(l.handle(), query_.sql, false, path_, err);
        if (!l.whole)
            return false;
        if (bind_params(l.whole.get(), query_, std::nullopt, std::nullopt, 0) != SQLITE_OK) {
            err = connection_error(l.handle(), "bind", path_);
            return false;
        }
        return true;
    }

    bool start_many(std::size_t lanes, const sqlite_data_source_options& o, bool& busy, source_error& err) noexcept
    {
        std::optional<SQLite::Database> sentinel;
        if (!open_connection(path_, o.busy_timeout, sentinel, err))
            return false;
        lanes_.resize(lanes);
        for (auto& l : lanes_)
            if (!open_connection(path_, o.busy_timeout, l.db, err))
                return false;
        for (int attempt = 0; attempt < 5; ++attempt) {
            std::int64_t before = 0;
            std::int64_t after = 0;
            if (!data_version(sentinel->getHandle(), before)) {
                err = connection_error(sentinel->getHandle(), "data_version", path_);
                return false;
            }
            for (auto& l : lanes_)
                if (!begin_read(l.handle(), o.mmap_size, path_, err))
                    return false;
            if (!data_version(sentinel->getHandle(), after)) {
                err = connection_error(sentinel->getHandle(), "data_version", path_);
                return false;
            }
            if (before == after)
                return prepare_all(err);
        }
        for (auto& l : lanes_)
            end_read(l.handle());
        lanes_.clear();
        busy = true;
        return false;
    }

    /// Prepares every statement a lane may run, so a missing table or
    /// column fails plan() (as it does for one lane).
    bool prepare_all(source_error& err) noexcept
    {
        try {
            for (auto& l : lanes_) {
                for (int lo = 0; lo < 2; ++lo) {
                    for (int hi = 0; hi < 2; ++hi)
                        if (!(l.slice_stmts[lo][hi] = prepare(l.handle(), slice_sql(query_, lo, hi, false), true, path_, err)))
                            return false;
                    if (!(l.key_stmts[lo] =
                              prepare(l.handle(), slice_sql(query_, lo, query_.high.has_value(), true), true, path_, err)))
                        return false;
                }
            }
            return true;
        } catch (const std::exception& e) {
            err = {make_error_code(errc::source_io), std::string("sqlite source: ") + e.what()};
            return false;
        }
    }

    std::string path_;
    bound_query query_;
    export_type type_;
    std::size_t slice_rows_;
    std::vector<lane_conn> lanes_;
    bool single_ = false;
    bool done_ = false;
    std::uint64_t next_index_ = 0;
    std::optional<slice_key> next_low_;
};

} // namespace

std::unique_ptr<export_plan> make_plan(const std::string& path, const sqlite_data_source_options& options,
                                       bound_query q, export_type type, std::size_t max_lanes, source_error& err)
{
    auto p = std::make_unique<sqlite_plan>(path, std::move(q), type, options.parallel_slice_rows);
    if (!p->start(max_lanes, options, err))
        return nullptr;
    return p;
}

} // namespace exportengine::adapters::sqlite_detail
