// exportengine/data_source.hpp — where the rows of an export come from.
//
// A source only says what an export's rows are; the engine (run_export)
// formats them, reads slices in parallel, orders them, reads ahead and writes
// behind, so every source gets all of that without writing it.
//
// The contract, in three steps:
//
//  1. columns(type): the export's columns, in output order.
//  2. plan(job, options): fixes what the export reads (one snapshot, where
//     the source can) and how it can be split. The plan hands out *slices*:
//     ordered, disjoint pieces of the export whose concatenation, in order,
//     is the file's rows in the file's order — key ranges `[low, high)` of
//     the export's sort key (contacts: the id; delivery reports:
//     (submitted_at, id)), or opaque partitions. A source that cannot split
//     an export hands out one slice. Slices are handed out one at a time
//     (next_slice) rather than listed up front: finding where a slice ends
//     can be an index walk, and listing them all first would walk the whole
//     index before the first row.
//  3. open(lane, slice): a cursor over one slice, which fills a row_batch per
//     call — one virtual call per batch, never per row or field.
//
// A plan has `lanes()` lanes (at most the readers asked for): run_export
// runs one reader thread per lane, each with at most one cursor open at a
// time. `consistency()` says whether all the lanes read one snapshot.
//
// Values (row_batch): integers, timestamps (unix seconds), text (copied into
// an arena the batch owns and reuses) and NULL, row-major, in fixed cells:
// no allocation per field once the batch has warmed up, no virtual call per
// field. A source may give any column's value as text (e.g. timestamps a
// database stores already formatted): the writer copies text as given, only
// guarded (free text) and quoted as needed.
//
// Threads. Everything here blocks (it reads a database); the engine calls
// it from its job pool and run_export's reader threads, never from the
// host's threads. In the engine (run_export alone: its calling thread takes
// the job pool thread's part):
//
//  - data_source: columns() and plan() on a job pool thread, one export per
//    thread, several exports at once: a source must be thread-safe.
//  - export_plan: lanes(), consistency() and the destructor on the export's
//    job pool thread (destroyed after every reader thread has ended).
//    next_slice() is called by one thread at a time (run_export serialises
//    it, so slices are handed out in order) but not always the same one:
//    with one lane, the export's own thread asks for the first slices and
//    the lane's reader thread for the rest; with several lanes, whichever
//    reader is free; it may run while other lanes' cursors open and fill.
//    open() for lane L on L's reader thread, except that with one lane the
//    first cursor is opened on the export's own thread (a small export then
//    starts no thread) and handed, open, to the reader thread when a batch
//    comes back full. Cursors of different lanes run at once.
//  - row_cursor: used by one thread at a time, and by at most two in its
//    life (the hand-over above); each call happens after the previous one
//    returned, so a cursor needs no lock of its own. Destroyed by the
//    thread that used it last, or by the export's thread when the export
//    stops early.
//  - row_batch: filled by the thread that calls fill(); never shared while
//    it is being filled.
#pragma once

#include <exportengine/export_job.hpp>
#include <exportengine/schema.hpp>

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>

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

// ---------------------------------------------------------------------------
// Row batches.

namespace detail {

/// memcpy for the short values of a row, inline: fixed-size moves that
/// overlap rather than a library call per field (never reads or writes
/// outside [src, src + n) and [dst, dst + n)).
inline void copy_value(char* dst, const char* src, std::size_t n) noexcept
{
    if (n >= 16) {
        if (n > 64) {
            std::memcpy(dst, src, n);
            return;
        }
        std::size_t i = 0;
        for (; i + 16 <= n; i += 16) {
            char t[16];
            std::memcpy(t, src + i, 16);
            std::memcpy(dst + i, t, 16);
        }
        if (i < n) {
            char t[16];
            std::memcpy(t, src + n - 16, 16);
            std::memcpy(dst + n - 16, t, 16);
        }
        return;
    }
    if (n >= 8) {
        std::uint64_t a, b;
        std::memcpy(&a, src, 8);
        std::memcpy(&b, src + n - 8, 8);
        std::memcpy(dst, &a, 8);
        std::memcpy(dst + n - 8, &b, 8);
        return;
    }
    if (n >= 4) {
        std::uint32_t a, b;
        std::memcpy(&a, src, 4);
        std::memcpy(&b, src + n - 4, 4);
        std::memcpy(dst, &a, 4);
        std::memcpy(dst + n - 4, &b, 4);
        return;
    }
    for (std::size_t i = 0; i < n; ++i)
        dst[i] = src[i];
}

} // namespace detail

/// What one cell of a row_batch holds.
enum class value_kind : std::uint8_t { null, integer, timestamp, text };

/// One value: 16 bytes, no pointer into anything that moves. Left
/// uninitialised on purpose (a batch's cells are written before they are
/// read): allocating a batch must not touch its memory, or every small
/// export would pay for zeroing cells it never uses.
struct cell {
    std::int64_t value;  // the integer, the unix seconds, or the text's offset in the arena
    std::uint32_t size;  // text bytes
    value_kind kind;
};

/// Rows of values, row-major, in buffers the engine owns and reuses: the
/// cells of up to `capacity()` rows and one arena for their text. A source
/// appends fields in schema order with the put_* calls (inline, no virtual
/// call) and ends each row with end_row(); the reader formats them.
///
/// Memory: the cells are allocated once; the arena grows (doubling) only for
/// a batch with more text than any before, so a warmed-up batch allocates
/// nothing. put_text throws std::bad_alloc if the arena cannot grow.
class row_batch {
public:
    row_batch() = default;
    /// A batch of `capacity` rows of `columns` values.
    row_batch(std::size_t columns, std::size_t capacity) { reset(columns, capacity); }
    row_batch(row_batch&&) noexcept = default;
    row_batch& operator=(row_batch&&) noexcept = default;

    /// Reshapes (and empties) the batch.
    void reset(std::size_t columns, std::size_t capacity)
    {
        columns_ = columns;
        capacity_ = capacity == 0 ? 1 : capacity;
        cells_ = std::make_unique_for_overwrite<cell[]>(columns_ * capacity_);
        if (!arena_) {
            arena_capacity_ = 16 * 1024;
            arena_ = std::make_unique_for_overwrite<char[]>(arena_capacity_);
        }
        clear();
    }

    /// Drops the rows; keeps the memory.
    void clear() noexcept
    {
        rows_ = 0;
        next_ = cells_.get();
        arena_size_ = 0;
    }

    [[nodiscard]] std::size_t columns() const noexcept { return columns_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
    [[nodiscard]] bool empty() const noexcept { return rows_ == 0; }
    [[nodiscard]] bool full() const noexcept { return rows_ >= capacity_; }

    // -- writing (the source), one row at a time, fields in schema order --
    void put_null() noexcept { (next_++)->kind = value_kind::null; }
    void put_integer(std::int64_t v) noexcept
    {
        next_->value = v;
        (next_++)->kind = value_kind::integer;
    }
    void put_timestamp(std::int64_t unix_seconds) noexcept
    {
        next_->value = unix_seconds;
        (next_++)->kind = value_kind::timestamp;
    }
    void put_text(std::string_view v)
    {
        const std::size_t n = v.size();
        if (arena_size_ + n > arena_capacity_) [[unlikely]]
            grow(n);
        detail::copy_value(arena_.get() + arena_size_, v.data(), n);
        next_->value = static_cast<std::int64_t>(arena_size_);
        next_->size = static_cast<std::uint32_t>(n);
        (next_++)->kind = value_kind::text;
        arena_size_ += n;
    }
    /// Ends the row. A row must have exactly columns() fields.
    void end_row() noexcept { ++rows_; }
    /// Undoes the fields of the row begun but not ended (a source that
    /// failed mid-row).
    void drop_partial_row() noexcept { next_ = cells_.get() + rows_ * columns_; }

    // -- reading (the engine) --
    [[nodiscard]] const cell* row(std::size_t r) const noexcept { return cells_.get() + r * columns_; }
    [[nodiscard]] std::string_view text(const cell& c) const noexcept
    {
        return {arena_.get() + c.value, c.size};
    }

private:
    void grow(std::size_t n)
    {
        std::size_t cap = arena_capacity_ * 2;
        while (cap < arena_size_ + n)
            cap *= 2;
        auto grown = std::make_unique_for_overwrite<char[]>(cap);
        std::memcpy(grown.get(), arena_.get(), arena_size_);
        arena_ = std::move(grown);
        arena_capacity_ = cap;
    }

    std::unique_ptr<cell[]> cells_;
    cell* next_ = nullptr;
    std::size_t columns_ = 0;
    std::size_t capacity_ = 0;
    std::size_t rows_ = 0;
    std::unique_ptr<char[]> arena_;
    std::size_t arena_capacity_ = 0;
    std::size_t arena_size_ = 0;
};

// ---------------------------------------------------------------------------
// Plans, slices, cursors.

/// A position in an export's sort key: `id` for an integer key; `text` then
/// `id` for a (text, integer) key such as delivery reports'
/// (submitted_at, id).
struct slice_key {
    std::string text{};
    std::int64_t id = 0;
    friend bool operator==(const slice_key&, const slice_key&) = default;
};

/// One piece of an export. Key-range sources fill `low`/`high` (`[low,
/// high)`; absent: unbounded on that side); a source that partitions some
/// other way uses `partition`. `index` is the slice's place in the file
/// (0, 1, 2, ...), set by the plan.
struct slice {
    std::uint64_t index = 0;
    std::optional<slice_key> low{};
    std::optional<slice_key> high{};
    std::int64_t partition = 0;
};

/// What one row_cursor::fill reads into.
class row_cursor {
public:
    virtual ~row_cursor() = default;

    /// Appends up to `out.capacity() - out.rows()` complete rows of the
    /// slice to `out` (the caller clears it between calls). Returns the rows
    /// appended; 0 means the slice's end, or an error when `err` is set. A
    /// cursor may be destroyed at any point (the export was cancelled or
    /// failed elsewhere).
    virtual std::size_t fill(row_batch& out, source_error& err) = 0;
};

/// Whether the slices of a plan read one snapshot.
enum class plan_consistency : std::uint8_t {
    /// One slice (or one lane reading the slices one after another on one
    /// transaction): one snapshot by construction.
    single_reader,
    /// Several lanes, all on one snapshot: a write committed after plan()
    /// returned is seen by no slice.
    shared_snapshot,
    /// Several lanes without a common snapshot (a source that cannot share
    /// one): only for data that does not change during an export.
    none,
};

/// What run_export asks of plan().
struct plan_options {
    /// Lanes (reader threads) the engine would like; the plan may give fewer.
    std::size_t max_lanes = 1;
};

/// One export, planned: its snapshot and its slices.
class export_plan {
public:
    virtual ~export_plan() = default;

    /// Lanes: cursors that may be open at once, one per lane (1..max_lanes).
    [[nodiscard]] virtual std::size_t lanes() const noexcept = 0;
    [[nodiscard]] virtual plan_consistency consistency() const noexcept = 0;

    /// The next slice in file order into `out` (its `index` set); false when
    /// there are none left, or on an error (`err` set). `lane` is the lane
    /// that will read it (a source may use that lane's connection to find
    /// the slice's end). Called by one thread at a time.
    virtual bool next_slice(std::size_t lane, slice& out, source_error& err) = 0;

    /// A cursor over `s` on `lane` (< lanes()). At most one cursor per lane
    /// is open at a time; a lane's cursors are opened and used on the lane's
    /// thread. Null with `err` set on failure.
    virtual std::unique_ptr<row_cursor> open(std::size_t lane, const slice& s, source_error& err) = 0;

    /// The number of rows the export will have, if the source knows it
    /// cheaply (for progress); nullopt otherwise.
    [[nodiscard]] virtual std::optional<std::int64_t> estimated_rows() const { return std::nullopt; }
};

class data_source {
public:
    virtual ~data_source() = default;

    /// The columns of an export type, in output order.
    [[nodiscard]] virtual schema columns(export_type type) const = 0;

    /// Plans `job` (its account, type and filter): fixes its snapshot where
    /// the source can and says how it splits. Null with `err` set on failure.
    virtual std::unique_ptr<export_plan> plan(const export_job& job, const plan_options& options,
                                              source_error& err) = 0;
};

} // namespace exportengine
