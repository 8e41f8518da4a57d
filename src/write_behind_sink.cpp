#include <exportengine/error.hpp>
#include <exportengine/write_behind_sink.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace exportengine {

struct write_behind_sink::impl {
    byte_sink& down;
    const std::size_t cap;
    std::vector<std::unique_ptr<char[]>> storage;

    std::mutex m;
    std::condition_variable cv;
    std::deque<std::pair<char*, std::size_t>> full; // waiting to be written, in order
    std::vector<char*> empty;                        // free buffers
    bool stopping = false;
    bool writing = false; // the thread holds a buffer
    boost::system::error_code ec;
    std::atomic<std::uint64_t> written{0};

    char* cur = nullptr; // the producer's buffer
    std::size_t cur_len = 0;
    bool finished = false;
    std::thread worker;

    impl(byte_sink& d, const write_behind_options& o) : down(d), cap(o.buffer_size)
    {
        if (o.buffers < 2)
            throw std::invalid_argument("write_behind_sink: at least 2 buffers");
        if (o.buffer_size < 4096)
            throw std::invalid_argument("write_behind_sink: buffer_size must be at least 4096");
        for (std::size_t i = 0; i < o.buffers; ++i) {
            storage.push_back(std::make_unique_for_overwrite<char[]>(cap));
            empty.push_back(storage.back().get());
        }
        cur = empty.back();
        empty.pop_back();
        worker = std::thread([this] { run(); });
    }

    ~impl()
    {
        {
            std::lock_guard lk(m);
            stopping = true;
        }
        cv.notify_all();
        worker.join();
    }

    void run()
    {
        std::unique_lock lk(m);
        for (;;) {
            cv.wait(lk, [&] { return stopping || !full.empty(); });
            if (stopping)
                return; // destroyed without finish: what is queued is dropped
            auto [buf, len] = full.front();
            full.pop_front();
            writing = true;
            const bool skip = static_cast<bool>(ec); // after an error, drop the rest
            lk.unlock();
            boost::system::error_code wec;
            if (!skip)
                written += down.write(buf, len, wec);
            lk.lock();
            writing = false;
            if (wec && !ec)
                ec = wec;
            empty.push_back(buf);
            cv.notify_all();
        }
    }

    /// Queues the producer's buffer and takes a free one (waiting if none).
    void hand_over()
    {
        std::unique_lock lk(m);
        full.emplace_back(cur, cur_len);
        cv.notify_all();
        cv.wait(lk, [&] { return !empty.empty(); });
        cur = empty.back();
        empty.pop_back();
        cur_len = 0;
    }

    std::size_t write(const char* data, std::size_t n, boost::system::error_code& out)
    {
        {
            std::lock_guard lk(m);
            if (finished && !ec)
                ec = errc::stream_closed;
            if (ec) {
                out = ec;
                return 0;
            }
        }
        std::size_t taken = 0;
        while (taken < n) {
            const std::size_t k = std::min(n - taken, cap - cur_len);
            std::memcpy(cur + cur_len, data + taken, k);
            cur_len += k;
            taken += k;
            if (cur_len == cap)
                hand_over();
        }
        out = {};
        return taken;
    }

    void finish(boost::system::error_code& out)
    {
        if (finished) {
            std::lock_guard lk(m);
            out = ec;
            return;
        }
        finished = true;
        if (cur_len > 0)
            hand_over();
        {
            std::unique_lock lk(m);
            cv.wait(lk, [&] { return full.empty() && !writing; });
            out = ec;
        }
        if (!out)
            down.finish(out);
        if (out) {
            std::lock_guard lk(m);
            if (!ec)
                ec = out;
        }
    }
};

write_behind_sink::write_behind_sink(byte_sink& downstream, const write_behind_options& options)
    : impl_(std::make_unique<impl>(downstream, options))
{
}

write_behind_sink::~write_behind_sink() = default;

std::size_t write_behind_sink::write(const char* data, std::size_t size, boost::system::error_code& ec)
{
    return impl_->write(data, size, ec);
}

void write_behind_sink::finish(boost::system::error_code& ec) { impl_->finish(ec); }

std::uint64_t write_behind_sink::bytes_written() const noexcept { return impl_->written.load(); }

} // namespace exportengine
