// exportengine/adapters/sqlite_data_source.hpp — contacts and delivery
// reports read from a SQLite file with SPEC §7's reference schema.
//
// Every cursor opens its own read-only connection and holds one read
// transaction for its lifetime, so an export reads one consistent snapshot
// while the host keeps writing (in WAL mode a reader never blocks a writer).
// Rows are streamed: a prepared statement is stepped batch by batch and each
// field goes straight from SQLite's buffers into the CSV writer.
//
// Filters (SPEC §3) are bound as parameters, never spliced into SQL: ID sets
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
// SQLite's message and the path, for the log. open() and next_batch() never
// throw.
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
};

class sqlite_data_source final : public data_source {
public:
    /// Does not open the file yet: every cursor opens its own read-only
    /// connection.
    explicit sqlite_data_source(std::string path, sqlite_data_source_options options = {});

    [[nodiscard]] schema columns(export_type type) const override;
    std::unique_ptr<row_cursor> open(const export_job& job, source_error& err) override;

    /// The `EXPLAIN QUERY PLAN` lines (the `detail` column) of the query
    /// open() runs for `job`, with the same parameters bound. For tests and
    /// diagnostics. Throws std::system_error on failure.
    [[nodiscard]] std::vector<std::string> query_plan(const export_job& job) const;

    /// Creates the indexes of SPEC §7 that the export queries need, if they
    /// are missing (used by `seed`). Opens the file read-write. Throws
    /// std::system_error on failure.
    static void create_indexes(const std::string& path);

private:
    std::string path_;
    sqlite_data_source_options options_;
};

} // namespace exportengine::adapters
