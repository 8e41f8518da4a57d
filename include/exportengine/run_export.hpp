// exportengine/run_export.hpp — one export, end to end, without an engine.
//
//     source.plan -> K reader threads over the plan's slices (read-ahead:
//     a bounded number of batches in flight) -> CSV (csv_writer) -> optional
//     gzip -> write-behind -> destination
//
// One lane: a reader thread fills row batches (`read_ahead_batches` of
// `batch_rows` rows in flight) and the calling thread formats them into the
// file's writer. Several lanes: each reader thread claims the next slice,
// reads it and formats it on its own thread into bounded chunks (its own
// csv_writer with the file's options, no header); the calling thread appends
// the chunks slice by slice, in order, with csv_writer::append_rows. Either
// way the bytes are exactly those of one reader reading the export in order.
//
// Memory is bounded whatever the export's size: per lane `read_ahead_batches`
// batches (one lane) or `chunk_queue` chunks of `chunk_bytes` (several), plus
// the writer's, gzip's and write-behind's buffers.
//
// The destination is finished (byte_sink::finish) only when the export
// succeeded; on an error or cancellation it is left unfinished for the caller
// to discard.
#pragma once

#include <exportengine/csv_writer.hpp>
#include <exportengine/data_source.hpp>
#include <exportengine/export_job.hpp>
#include <exportengine/gzip_sink.hpp>

#include <boost/system/error_code.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace exportengine {

/// Formats the rows of `b` into `w` (fields in schema order): one switch
/// per field, inline writer calls, no virtual call. What run_export does with
/// every batch; for tests and hosts that read a plan themselves.
inline void format_rows(csv_writer& w, const row_batch& b) noexcept
{
    const std::size_t cols = b.columns();
    const std::size_t n = b.rows();
    for (std::size_t r = 0; r < n; ++r) {
        const cell* c = b.row(r);
        for (std::size_t i = 0; i < cols; ++i) {
            switch (c[i].kind) {
            case value_kind::null:
                w.write_null();
                break;
            case value_kind::integer:
                w.write_integer(c[i].value);
                break;
            case value_kind::timestamp:
                w.write_timestamp(c[i].value);
                break;
            case value_kind::text:
                w.write_text(b.text(c[i]));
                break;
            }
        }
        w.end_row();
    }
}

struct run_export_options {
    /// Reader threads (lanes) asked of the source's plan; it may give fewer.
    std::size_t readers = 1;
    /// Rows per row_batch (one cursor call).
    std::size_t batch_rows = 1024;
    /// One lane: batches read ahead of the formatting thread.
    std::size_t read_ahead_batches = 8;
    /// Several lanes: a reader's chunk size and the chunks it may queue.
    std::size_t chunk_bytes = 128 * 1024;
    std::size_t chunk_queue = 8;
    /// The file's csv_writer buffer and each write-behind buffer.
    std::size_t buffer_size = 512 * 1024;
    /// The gzip stage's options, when the job asks for gzip.
    gzip_options gzip{};
    /// Put a write-behind stage (its own thread) before the destination.
    bool write_behind = true;
};

/// Rows written so far (relaxed stores once per batch) and a stop request
/// (checked once per batch). Either may be null.
struct run_export_control {
    std::atomic<std::int64_t>* rows = nullptr;
    const std::atomic<bool>* stop = nullptr;
};

struct run_export_result {
    std::int64_t rows = 0;
    boost::system::error_code ec{}; // none: the destination was finished
    std::string detail{};           // for the log
    bool cancelled = false;         // stopped by `control.stop`
};

/// Runs `job` from `source` into `destination`: header, rows, and (on
/// success) destination.finish(). Never throws.
run_export_result run_export(const export_job& job, data_source& source, byte_sink& destination,
                             const run_export_options& options = {}, run_export_control control = {}) noexcept;

} // namespace exportengine
