// exportengine/data_source.hpp — where the rows of an export come from.
//
// A data_source declares the columns of each export type and opens a
// streaming cursor for a job. The cursor writes rows straight into the CSV
// writer in batches: one virtual call per batch, inline writer calls per
// field, so a source adds no per-field overhead.
//
// Cursors block (they read a database); the engine runs them on its blocking
// pool. A data_source must be thread-safe (several jobs open cursors at
// once); one cursor is used by one thread at a time.
#pragma once

#include <exportengine/csv_writer.hpp>
#include <exportengine/export_job.hpp>
#include <exportengine/schema.hpp>

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace exportengine {

/// An error from a source: `code` decides the job's fate (errc::source_busy
/// and errc::source_io are retried, errc::source_schema and
/// errc::source_corrupt fail the job at once) and the message users see;
/// `detail` (SQL, file names, driver text) goes only to the log.
struct source_error {
    boost::system::error_code code{};
    std::string detail{};
    explicit operator bool() const noexcept { return static_cast<bool>(code); }
};

/// One export's rows, in the order the file must have them.
class row_cursor {
public:
    virtual ~row_cursor() = default;

    /// Writes up to `max_rows` complete rows to `out` (fields in schema order,
    /// each row ended with end_row). Returns the rows written; 0 means the
    /// end, or an error when `err` is set.
    virtual std::size_t next_batch(csv_writer& out, std::size_t max_rows, source_error& err) = 0;

    /// The number of rows the export will have, if the source knows it
    /// cheaply (for progress); nullopt otherwise.
    [[nodiscard]] virtual std::optional<std::int64_t> estimated_rows() const { return std::nullopt; }
};

class data_source {
public:
    virtual ~data_source() = default;

    /// The columns of an export type, in output order.
    [[nodiscard]] virtual schema columns(export_type type) const = 0;

    /// Opens a cursor for `job` (its account, type and filter). Runs one
    /// consistent snapshot for the cursor's lifetime where the source can.
    virtual std::unique_ptr<row_cursor> open(const export_job& job, source_error& err) = 0;
};

} // namespace exportengine
