// exportengine/adapters/sqlite_data_source.hpp — contacts and delivery
// reports read from a SQLite file with contract §7's reference schema.
//
// Every plan opens its own read-only connections and holds one read
// transaction on each for its lifetime, so an export reads one consistent
// snapshot while the host keeps writing (in WAL mode a reader never blocks a
// writer). Rows are streamed: a prepared statement is stepped batch by batch
// into the engine's row batches, and no buffer grows with the export.
//
// Filters (contract §3) are bound as parameters, never spliced into SQL: ID sets
// travel as one JSON array read with json_each(). Timestamps are stored as
// `YYYY-MM-DDTHH:MM:SSZ` text and copied to the file unchanged.
//
// Every query is answered in output order from an index without a sort when
// the indexes of create_indexes() exist; a database without them still
// exports correctly, only slower.
//
// Errors map to errc::source_schema (missing table or column),
// errc::source_corrupt (corrupt file, not a database), errc::source_busy
// (locked) and errc::source_io (I/O, missing file, disk full); `detail` holds
// SQLite's message and the path, for the log. plan(), open() and fill()
// never throw.
//
// Slices (plan_options::max_lanes > 1): the export's key space (contact id;
// delivery reports' (submitted_at, id)) is cut into consecutive slices of
// `parallel_slice_rows` rows, found on the export's own index as run_export
// asks for them (a `LIMIT 1 OFFSET n` walk of the covering index). Each lane
// has its own read-only connection. Contacts filtered by listIds or
// contactIds are one slice: their query is driven by the ids (a lookup per
// id, in id order), so its cost follows the lists, not the account.
//
// Consistency: the lanes' connections start their read transactions one
// after another. plan() checks with `PRAGMA data_version` on another
// connection, read before the first and after the last started, that no
// commit landed in between — then all read the same snapshot
// (plan_consistency::shared_snapshot). If commits keep landing, it tries
// again (5 times) and then falls back to one lane, which is always one
// snapshot. (Debian's SQLite is built without SQLITE_ENABLE_SNAPSHOT, so
// sqlite3_snapshot_open is not available to share a snapshot directly.)
//
// Thread-safe: the object holds only the path and options.
#pragma once

#include <exportengine/data_source.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace exportengine::adapters {

struct sqlite_data_source_options {
    /// How long a statement waits on a lock before failing with
    /// errc::source_busy.
    std::chrono::milliseconds busy_timeout{5000};
    /// Rows per slice when an export is read by several lanes. The default
    /// keeps a slice's CSV (~0.5 MB of contacts) within one reader's chunk
    /// queue in run_export, so readers rarely wait on each other. (How many
    /// lanes read is the engine's choice: engine_options::readers,
    /// run_export_options::readers.)
    std::size_t parallel_slice_rows = 4096;
    /// Bytes of the file each connection reads through mmap(2) instead of
    /// read(2) (`PRAGMA mmap_size`; SQLite caps it, at 2 GiB on Debian); 0,
    /// the default, leaves it off. It saves system time (with 2 readers on 2
    /// cores it took a 10 M-row export from ~1.9 to ~2.4 M rows/s), but the
    /// mapped pages of the file count in the process's RSS, and a file
    /// truncated under the mapping by another process faults.
    std::int64_t mmap_size = 0;
};

class sqlite_data_source final : public data_source {
public:
    /// Does not open the file yet: every plan opens its own read-only
    /// connections.
    explicit sqlite_data_source(std::string path, sqlite_data_source_options options = {});

    [[nodiscard]] schema columns(export_type type) const override;
    std::unique_ptr<export_plan> plan(const export_job& job, const plan_options& options,
                                      source_error& err) override;

    /// The `EXPLAIN QUERY PLAN` lines (the `detail` column) of the query
    /// one lane runs for `job`, with the same parameters bound. For tests and
    /// diagnostics. Throws std::system_error on failure.
    [[nodiscard]] std::vector<std::string> query_plan(const export_job& job) const;

    /// The same for the queries several lanes run: [0] finds a slice's
    /// end (the index walk from a start key), [1] reads a slice bounded on
    /// both sides. Empty for exports that are one slice whatever the lanes
    /// (contacts filtered by listIds or contactIds: driven by their ids).
    /// Throws std::system_error on failure.
    [[nodiscard]] std::vector<std::vector<std::string>> parallel_query_plans(const export_job& job) const;

    /// Creates the indexes of contract §7 that the export queries need, if they
    /// are missing (used by `seed`). Opens the file read-write. Throws
    /// std::system_error on failure.
    static void create_indexes(const std::string& path);

private:
    std::string path_;
    sqlite_data_source_options options_;
};

} // namespace exportengine::adapters
