#include <exportengine/error.hpp>
#include <exportengine/gzip_sink.hpp>

#include <libdeflate.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace exportengine {
namespace {

/// One libdeflate compressor, reused for every block a thread compresses
/// (its state is allocated once, not once per block).
///
/// libdeflate rather than zlib: every block is a whole, independent gzip
/// member, which is exactly what libdeflate's one-shot API compresses, and
/// at level 1 it does so ~2x as fast as zlib with a slightly smaller result
/// (benchmarks/README.md). Any gzip reader reads the members (the tests read
/// them with zlib and gunzip).
class deflater {
public:
    explicit deflater(int level) : c_(libdeflate_alloc_compressor(level))
    {
        if (c_ == nullptr)
            throw std::bad_alloc();
    }
    deflater(const deflater&) = delete;
    deflater& operator=(const deflater&) = delete;
    ~deflater() { libdeflate_free_compressor(c_); }

    /// Compresses `in` into one complete gzip member in `out` (`cap` bytes,
    /// at least libdeflate_gzip_compress_bound). Returns the member's size, or 0 if it did not fit.
    std::size_t member(const char* in, std::size_t n, unsigned char* out, std::size_t cap)
    {
        return libdeflate_gzip_compress(c_, in, n, out, cap);
    }

private:
    libdeflate_compressor* c_;
};

struct slot {
    std::unique_ptr<char[]> in;
    std::size_t in_len = 0;
    std::unique_ptr<unsigned char[]> out;
    std::size_t out_len = 0;
    bool done = false; // compressed (or failed: out_len == 0)
};

} // namespace

struct gzip_sink::impl {
    byte_sink& down;
    const std::size_t block;
    const int level;
    std::size_t out_cap = 0;
    std::vector<slot> slots;
    std::size_t cur = 0;       // the slot being filled
    std::size_t in_flight = 0; // slots submitted, not yet written downstream
    std::uint64_t members = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    boost::system::error_code ec;
    bool finished = false;

    // Compresses on the calling thread: always with threads == 0, and for a
    // stream that ends inside its first block (no worker ever started).
    std::unique_ptr<deflater> inline_deflater;
    const unsigned threads;

    std::mutex m;
    std::condition_variable work_cv;
    std::condition_variable done_cv;
    std::deque<std::size_t> queue;
    bool stopping = false;
    // Started with the first full block, and block buffers are allocated as
    // they are first used: a small export costs one block and no thread.
    std::vector<std::thread> workers;

    impl(byte_sink& d, const gzip_options& o)
        : down(d), block(o.block_size), level(o.level), threads(o.threads)
    {
        if (o.level < 1 || o.level > 9)
            throw std::invalid_argument("gzip_sink: level must be 1..9");
        if (o.block_size < 64 * 1024)
            throw std::invalid_argument("gzip_sink: block_size must be at least 64 KiB");
        // The bound over every compressor (nullptr): no compressor is
        // allocated just to ask.
        out_cap = libdeflate_gzip_compress_bound(nullptr, block);
        slots.resize(o.threads == 0 ? 1 : 2 * std::size_t{o.threads});
    }

    void ensure_buffers(slot& s)
    {
        if (!s.in) {
            s.in = std::make_unique_for_overwrite<char[]>(block);
            s.out = std::make_unique_for_overwrite<unsigned char[]>(out_cap);
        }
    }

    void start_workers()
    {
        if (!workers.empty())
            return;
        workers.reserve(threads);
        try {
            for (unsigned i = 0; i < threads; ++i)
                workers.emplace_back([this] { work(); });
        } catch (...) {
            stop();
            throw;
        }
    }

    ~impl() { stop(); }

    void stop() noexcept
    {
        {
            std::lock_guard lk(m);
            stopping = true;
        }
        work_cv.notify_all();
        for (std::thread& t : workers)
            t.join();
        workers.clear();
    }

    void work()
    {
        deflater z(level);
        std::unique_lock lk(m);
        for (;;) {
            work_cv.wait(lk, [&] { return stopping || !queue.empty(); });
            if (stopping)
                return;
            const std::size_t i = queue.front();
            queue.pop_front();
            slot& s = slots[i];
            lk.unlock();
            // The slot is ours alone until `done` is set under the lock.
            const std::size_t n = z.member(s.in.get(), s.in_len, s.out.get(), out_cap);
            lk.lock();
            s.out_len = n;
            s.done = true;
            done_cv.notify_all();
        }
    }

    void set_error(boost::system::error_code e)
    {
        if (!ec)
            ec = e;
    }

    /// Writes the oldest submitted member downstream, waiting for it if
    /// `wait`; returns false if it was not ready.
    bool write_oldest(bool wait)
    {
        const std::size_t i = (cur + slots.size() - in_flight) % slots.size();
        slot& s = slots[i];
        {
            std::unique_lock lk(m);
            if (!s.done) {
                if (!wait)
                    return false;
                done_cv.wait(lk, [&] { return s.done; });
            }
        }
        --in_flight;
        s.done = false;
        if (ec)
            return true; // already failed: drain without writing
        if (s.out_len == 0) {
            set_error(errc::compression_failed);
            return true;
        }
        boost::system::error_code wec;
        bytes_out += down.write(reinterpret_cast<const char*>(s.out.get()), s.out_len, wec);
        if (wec)
            set_error(wec);
        return true;
    }

    /// Hands the current block to a worker (or compresses it here), then
    /// writes whatever members are ready, waiting only when every slot is
    /// in flight.
    void submit(bool last)
    {
        slot& s = slots[cur];
        ensure_buffers(s);
        ++members;
        if (threads == 0 || (last && workers.empty())) {
            if (!inline_deflater)
                inline_deflater = std::make_unique<deflater>(level);
            s.out_len = inline_deflater->member(s.in.get(), s.in_len, s.out.get(), out_cap);
            s.done = true; // never queued: no worker can see this slot
        } else {
            start_workers();
            {
                std::lock_guard lk(m);
                s.done = false;
                queue.push_back(cur);
            }
            work_cv.notify_one();
        }
        ++in_flight;
        cur = (cur + 1) % slots.size();
        // Keep the downstream busy with whatever is already compressed, and
        // make room: the next slot to fill must not be in flight.
        while (in_flight > 0 && write_oldest(in_flight == slots.size())) {
        }
        slots[cur].in_len = 0;
    }

    std::size_t write(const char* data, std::size_t n, boost::system::error_code& out_ec)
    {
        std::size_t taken = 0;
        if (finished)
            set_error(errc::stream_closed);
        while (!ec && taken < n) {
            slot& s = slots[cur];
            ensure_buffers(s);
            const std::size_t k = std::min(n - taken, block - s.in_len);
            std::memcpy(s.in.get() + s.in_len, data + taken, k);
            s.in_len += k;
            taken += k;
            bytes_in += k;
            if (s.in_len == block)
                submit(false);
        }
        out_ec = ec;
        return taken;
    }

    void finish(boost::system::error_code& out_ec)
    {
        if (!finished && !ec) {
            // An empty stream is still one (empty) member: a valid .gz file.
            if (slots[cur].in_len != 0 || members == 0)
                submit(true);
            while (in_flight > 0)
                write_oldest(true);
            if (!ec) {
                boost::system::error_code fec;
                down.finish(fec);
                if (fec)
                    set_error(fec);
            }
        }
        finished = true;
        out_ec = ec;
    }
};

gzip_sink::gzip_sink(byte_sink& downstream, const gzip_options& options)
    : impl_(std::make_unique<impl>(downstream, options))
{
}

gzip_sink::~gzip_sink() = default;

std::size_t gzip_sink::write(const char* data, std::size_t size, boost::system::error_code& ec)
{
    return impl_->write(data, size, ec);
}

void gzip_sink::finish(boost::system::error_code& ec) { impl_->finish(ec); }

std::uint64_t gzip_sink::bytes_in() const noexcept { return impl_->bytes_in; }
std::uint64_t gzip_sink::bytes_out() const noexcept { return impl_->bytes_out; }

} // namespace exportengine
