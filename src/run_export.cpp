#include <exportengine/run_export.hpp>

#include <exportengine/byte_sink.hpp>
#include <exportengine/csv_writer.hpp>
#include <exportengine/error.hpp>
#include <exportengine/gzip_sink.hpp>
#include <exportengine/write_behind_sink.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace exportengine {

namespace {

using boost::system::error_code;

bool stop_requested(const run_export_control& ctl) noexcept
{
    return ctl.stop != nullptr && ctl.stop->load(std::memory_order_relaxed);
}

void publish_rows(const run_export_control& ctl, std::int64_t rows) noexcept
{
    if (ctl.rows != nullptr)
        ctl.rows->store(rows, std::memory_order_relaxed);
}

/// What the reader threads share with the formatting thread.
struct shared_state {
    std::mutex mu;
    std::condition_variable cv;
    bool stop = false;                 // end every reader (cancelled, failed, or done)
    std::optional<source_error> error; // the first reader error

    void report(source_error e)
    {
        {
            std::lock_guard lk(mu);
            if (!error && !stop)
                error = std::move(e);
            stop = true;
        }
        cv.notify_all();
    }
    void halt()
    {
        {
            std::lock_guard lk(mu);
            stop = true;
        }
        cv.notify_all();
    }
};

source_error internal(const char* what, const std::exception& e)
{
    return {make_error_code(errc::internal_error), std::string("run_export: ") + what + ": " + e.what()};
}

source_error or_internal(source_error e, const char* what)
{
    if (!e)
        e = {make_error_code(errc::internal_error), std::string("run_export: ") + what + " gave nothing"};
    return e;
}

// ---------------------------------------------------------------------------
// One lane: a reader thread fills batches, this thread formats them.
//
// A small export never starts that thread: this thread reads and formats
// inline until a batch comes back full, and only then hands the open cursor
// to a reader thread. Batches are allocated as the reader needs them (up to
// read_ahead_batches), so a ten-row export costs one batch and no thread.

class single_lane {
public:
    single_lane(export_plan& plan, std::size_t columns, const run_export_options& opt)
        : plan_(plan), columns_(columns), capacity_(std::max<std::size_t>(opt.batch_rows, 1)),
          max_batches_(std::max<std::size_t>(opt.read_ahead_batches, 2))
    {
    }

    ~single_lane()
    {
        st_.halt();
        if (thread_.joinable())
            thread_.join();
    }

    run_export_result run(csv_writer& csv, const run_export_control& ctl)
    {
        run_export_result r;
        if (read_inline(csv, ctl, r))
            return r;
        thread_ = std::thread([this] { read(); });
        for (;;) {
            if (stop_requested(ctl)) {
                r.cancelled = true;
                return r;
            }
            row_batch* b = nullptr;
            {
                std::unique_lock lk(st_.mu);
                while (ready_.empty() && !done_) {
                    // Wake now and then to see a stop request while the
                    // source is slow.
                    st_.cv.wait_for(lk, std::chrono::milliseconds{50});
                    if (stop_requested(ctl)) {
                        r.cancelled = true;
                        return r;
                    }
                }
                if (!ready_.empty()) {
                    b = ready_.front();
                    ready_.pop_front();
                } else if (st_.error) {
                    r.ec = st_.error->code;
                    r.detail = std::move(st_.error->detail);
                    return r;
                } else {
                    return r; // every row formatted
                }
            }
            format_rows(csv, *b);
            r.rows += static_cast<std::int64_t>(b->rows());
            {
                std::lock_guard lk(st_.mu);
                free_.push_back(b);
            }
            st_.cv.notify_all();
            publish_rows(ctl, r.rows);
            if (csv.error()) {
                r.ec = csv.error();
                r.detail = "writing the file";
                return r;
            }
        }
    }

private:
    /// Reads and formats on this thread until the export ends (true: `r` is
    /// the result) or a batch comes back full (false: the open cursor is
    /// left in cur_ for the reader thread, the batch in free_).
    bool read_inline(csv_writer& csv, const run_export_control& ctl, run_export_result& r)
    {
        try {
            row_batch& b = pool_.emplace_back(columns_, capacity_);
            for (;;) {
                if (stop_requested(ctl)) {
                    r.cancelled = true;
                    return true;
                }
                source_error err;
                if (!cur_) {
                    slice s;
                    if (!plan_.next_slice(0, s, err)) {
                        if (err) {
                            r.ec = err.code;
                            r.detail = std::move(err.detail);
                        }
                        return true;
                    }
                    cur_ = plan_.open(0, s, err);
                    if (!cur_) {
                        err = or_internal(std::move(err), "open");
                        r.ec = err.code;
                        r.detail = std::move(err.detail);
                        return true;
                    }
                }
                b.clear();
                const std::size_t n = cur_->fill(b, err);
                b.drop_partial_row();
                if (!b.empty()) {
                    format_rows(csv, b);
                    r.rows += static_cast<std::int64_t>(b.rows());
                    publish_rows(ctl, r.rows);
                    if (csv.error()) {
                        r.ec = csv.error();
                        r.detail = "writing the file";
                        return true;
                    }
                }
                if (err) {
                    r.ec = err.code;
                    r.detail = std::move(err.detail);
                    return true;
                }
                if (n == 0) {
                    cur_.reset(); // the slice's end
                    continue;
                }
                if (b.full()) {
                    free_.push_back(&b);
                    return false;
                }
            }
        } catch (const std::exception& e) {
            const source_error err = internal("reader", e);
            r.ec = err.code;
            r.detail = err.detail;
            return true;
        }
    }

    void finish(std::optional<source_error> e)
    {
        {
            std::lock_guard lk(st_.mu);
            if (e && !st_.error)
                st_.error = std::move(e);
            done_ = true;
        }
        st_.cv.notify_all();
    }

    void read() noexcept
    {
        try {
            for (;;) {
                // The cursor the inline phase left open first, then the
                // plan's next slices.
                std::unique_ptr<row_cursor> cur = std::move(cur_);
                source_error err;
                if (!cur) {
                    slice s;
                    if (!plan_.next_slice(0, s, err))
                        return finish(err ? std::optional(std::move(err)) : std::nullopt);
                    cur = plan_.open(0, s, err);
                    if (!cur)
                        return finish(or_internal(std::move(err), "open"));
                }
                for (;;) {
                    row_batch* b = nullptr;
                    {
                        std::unique_lock lk(st_.mu);
                        st_.cv.wait(lk, [&] { return st_.stop || !free_.empty() || pool_.size() < max_batches_; });
                        if (st_.stop) {
                            lk.unlock();
                            return finish(std::nullopt);
                        }
                        if (!free_.empty()) {
                            b = free_.front();
                            free_.pop_front();
                        } else {
                            // Only this thread adds batches; the deque
                            // keeps the others where they are.
                            b = &pool_.emplace_back(columns_, capacity_);
                        }
                    }
                    b->clear();
                    const std::size_t n = cur->fill(*b, err);
                    b->drop_partial_row();
                    {
                        std::lock_guard lk(st_.mu);
                        (b->rows() != 0 ? ready_ : free_).push_back(b);
                    }
                    st_.cv.notify_all();
                    if (err)
                        return finish(std::move(err));
                    if (n == 0)
                        break; // the slice's end
                }
            }
        } catch (const std::exception& e) {
            finish(internal("reader", e));
        }
    }

    export_plan& plan_;
    const std::size_t columns_;
    const std::size_t capacity_;
    const std::size_t max_batches_;
    shared_state st_;
    std::deque<row_batch> pool_;            // grows up to max_batches_; guarded by st_.mu
    std::unique_ptr<row_cursor> cur_;       // handed from the inline phase to the reader
    std::deque<row_batch*> free_;  // guarded by st_.mu
    std::deque<row_batch*> ready_; // guarded by st_.mu, in file order
    bool done_ = false;            // guarded by st_.mu: the reader ended
    std::thread thread_;
};

// ---------------------------------------------------------------------------
// Several lanes: each reader claims slices in turn and formats them into
// chunks; this thread appends the chunks slice by slice.
//
// `claim_mu_` serialises claims (next_slice, then the slice's owner is
// recorded, so owners_ is in file order); `st_.mu` guards the queues,
// owners_, claimed_all_ and the shared state. Lock order: claim_mu_, st_.mu.

class many_lanes {
public:
    many_lanes(export_plan& plan, schema columns, const csv_options& file_options, const run_export_options& opt)
        : plan_(plan), columns_(columns),
          // A lane fills and formats its batch on one thread: a small batch
          // stays in the core's cache between the two.
          batch_rows_(std::clamp<std::size_t>(opt.batch_rows, 1, 256)),
          chunk_bytes_(std::max<std::size_t>(opt.chunk_bytes, 4096)),
          queue_entries_(std::max<std::size_t>(opt.chunk_queue, 1)), lanes_(plan.lanes())
    {
        options_ = file_options;
        options_.bom = false; // the file's writer writes the BOM and header
        options_.buffer_size = chunk_bytes_;
    }

    ~many_lanes()
    {
        st_.halt();
        for (auto& l : lanes_)
            if (l.thread.joinable())
                l.thread.join();
    }

    run_export_result run(csv_writer& csv, const run_export_control& ctl)
    {
        run_export_result r;
        try {
            for (std::size_t i = 0; i < lanes_.size(); ++i)
                lanes_[i].thread = std::thread([this, i] { read(i); });
        } catch (const std::exception& e) {
            st_.halt();
            const source_error err = internal("starting readers", e);
            r.ec = err.code;
            r.detail = err.detail;
            return r;
        }
        for (;;) {
            if (stop_requested(ctl)) {
                r.cancelled = true;
                return r;
            }
            chunk c;
            {
                std::unique_lock lk(st_.mu);
                for (;;) {
                    if (st_.error) {
                        r.ec = st_.error->code;
                        r.detail = std::move(st_.error->detail);
                        return r;
                    }
                    if (owners_.empty() && claimed_all_)
                        return r; // every slice written
                    if (!owners_.empty()) {
                        auto& q = lanes_[owners_.front()].queue;
                        if (!q.empty()) {
                            c = std::move(q.front());
                            q.pop_front();
                            if (c.last)
                                owners_.pop_front();
                            break;
                        }
                    }
                    st_.cv.wait_for(lk, std::chrono::milliseconds{50});
                    if (stop_requested(ctl)) {
                        r.cancelled = true;
                        return r;
                    }
                }
            }
            st_.cv.notify_all(); // the reader may be waiting for room
            if (c.data) {
                csv.append_rows(c.data.get(), c.size, c.rows);
                {
                    std::lock_guard lk(st_.mu);
                    lanes_[c.owner].free.push_back(std::move(c.data));
                }
                r.rows += static_cast<std::int64_t>(c.rows);
                publish_rows(ctl, r.rows);
                if (csv.error()) {
                    r.ec = csv.error();
                    r.detail = "writing the file";
                    return r;
                }
            }
        }
    }

private:
    struct chunk {
        std::unique_ptr<char[]> data; // null: the end of a slice
        std::size_t size = 0;
        std::uint64_t rows = 0;       // rows that end in this chunk
        std::size_t owner = 0;        // the lane whose buffer `data` is
        bool last = false;
    };

    struct lane {
        std::deque<chunk> queue;
        std::vector<std::unique_ptr<char[]>> free;
        std::thread thread;
    };

    /// A lane's csv_writer writes here: each buffer becomes a chunk in the
    /// lane's queue, waiting for room while the queue is full.
    class chunk_sink final : public byte_sink {
    public:
        chunk_sink(many_lanes& m, std::size_t lane) : m_(m), lane_(lane) {}
        void attach(const csv_writer& w) { writer_ = &w; }

        std::size_t write(const char* data, std::size_t size, error_code& ec) override
        {
            // Rows ended so far: a flush inside a row leaves that row's end
            // (and its count) for a later chunk.
            const std::uint64_t rows = writer_->rows() - counted_;
            if (!m_.push(lane_, data, size, rows, false)) {
                ec = make_error_code(boost::system::errc::operation_canceled);
                return 0;
            }
            counted_ += rows;
            ec = {};
            return size;
        }

    private:
        many_lanes& m_;
        std::size_t lane_;
        const csv_writer* writer_ = nullptr;
        std::uint64_t counted_ = 0;
    };

    /// Queues a chunk (a copy of `data`) or a slice end; false when stopped.
    bool push(std::size_t at, const char* data, std::size_t size, std::uint64_t rows, bool last)
    {
        lane& l = lanes_[at];
        std::unique_ptr<char[]> buf;
        std::unique_lock lk(st_.mu);
        st_.cv.wait(lk, [&] { return st_.stop || l.queue.size() < queue_entries_; });
        if (st_.stop)
            return false;
        if (!last) {
            if (!l.free.empty()) {
                buf = std::move(l.free.back());
                l.free.pop_back();
            }
            lk.unlock(); // copy outside the lock; only this lane adds to its queue
            if (!buf)
                buf = std::make_unique_for_overwrite<char[]>(chunk_bytes_);
            std::memcpy(buf.get(), data, size);
            lk.lock();
            if (st_.stop)
                return false;
        }
        l.queue.push_back({.data = std::move(buf), .size = size, .rows = rows, .owner = at, .last = last});
        lk.unlock();
        st_.cv.notify_all();
        return true;
    }

    /// Claims the next slice for lane `at`: false when none is left (or on an
    /// error, reported).
    bool claim(std::size_t at, slice& s)
    {
        std::lock_guard claim_lk(claim_mu_);
        {
            std::lock_guard lk(st_.mu);
            if (st_.stop || claimed_all_)
                return false;
        }
        source_error err;
        const bool got = plan_.next_slice(at, s, err);
        if (err) {
            st_.report(std::move(err));
            return false;
        }
        {
            std::lock_guard lk(st_.mu);
            if (got)
                owners_.push_back(at);
            else
                claimed_all_ = true;
        }
        st_.cv.notify_all();
        return got;
    }

    void read(std::size_t at) noexcept
    {
        try {
            chunk_sink sink(*this, at);
            csv_writer csv(columns_, sink, options_);
            sink.attach(csv);
            row_batch b(columns_.size(), batch_rows_);
            for (;;) {
                slice s;
                if (!claim(at, s))
                    return;
                source_error err;
                {
                    std::unique_ptr<row_cursor> cur = plan_.open(at, s, err);
                    if (!cur)
                        return st_.report(or_internal(std::move(err), "open"));
                    for (;;) {
                        b.clear();
                        const std::size_t n = cur->fill(b, err);
                        b.drop_partial_row();
                        format_rows(csv, b);
                        if (err)
                            return st_.report(std::move(err));
                        if (n == 0 || csv.error())
                            break;
                    }
                }
                error_code ec;
                csv.flush(ec);
                if (ec) {
                    // Stopped (the sink refuses), or a formatting error.
                    if (ec != boost::system::errc::operation_canceled)
                        st_.report({ec, "run_export: formatting a slice"});
                    return;
                }
                if (!push(at, nullptr, 0, 0, true))
                    return;
            }
        } catch (const std::exception& e) {
            st_.report(internal("reader", e));
        }
    }

    export_plan& plan_;
    schema columns_;
    csv_options options_;
    std::size_t batch_rows_;
    std::size_t chunk_bytes_;
    std::size_t queue_entries_;
    std::vector<lane> lanes_;
    shared_state st_;
    std::mutex claim_mu_;
    std::deque<std::size_t> owners_; // the lane of each slice not yet written, in file order
    bool claimed_all_ = false;
};

} // namespace

run_export_result run_export(const export_job& job, data_source& source, byte_sink& destination,
                             const run_export_options& options, run_export_control control) noexcept
{
    run_export_result r;
    try {
        source_error serr;
        std::unique_ptr<export_plan> plan =
            source.plan(job, {.max_lanes = std::max<std::size_t>(options.readers, 1)}, serr);
        if (!plan || serr) {
            serr = or_internal(std::move(serr), "plan");
            r.ec = serr.code;
            r.detail = std::move(serr.detail);
            return r;
        }

        // CSV -> (gzip) -> (write-behind) -> destination: the file's write(2)
        // and checksum run on the write-behind thread while this one formats.
        std::optional<write_behind_sink> behind;
        if (options.write_behind)
            behind.emplace(destination, write_behind_options{.buffer_size = options.buffer_size});
        byte_sink& below = behind ? static_cast<byte_sink&>(*behind) : destination;
        std::optional<gzip_sink> gz;
        if (job.request.format.compression == compression_kind::gzip)
            gz.emplace(below, options.gzip);
        byte_sink& out = gz ? static_cast<byte_sink&>(*gz) : below;

        const schema columns = source.columns(job.request.type);
        const csv_options file_options{.delimiter = job.request.format.delimiter,
                                       .bom = job.request.format.bom,
                                       .buffer_size = options.buffer_size};
        csv_writer csv(columns, out, file_options);
        csv.write_header();

        if (plan->lanes() <= 1) {
            single_lane one(*plan, columns.size(), options);
            r = one.run(csv, control);
        } else {
            many_lanes many(*plan, columns, file_options, options);
            r = many.run(csv, control);
        }
        if (r.ec || r.cancelled)
            return r;
        error_code ec;
        csv.finish(ec);
        if (ec) {
            r.ec = ec;
            r.detail = "finishing the file";
        }
        return r;
    } catch (const std::exception& e) {
        r.ec = make_error_code(errc::internal_error);
        r.detail = std::string("run_export: ") + e.what();
        return r;
    }
}

} // namespace exportengine
