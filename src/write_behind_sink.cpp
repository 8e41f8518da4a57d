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
    const std::size_t max_buffers;
    std::vector<std::unique_ptr<char[]>> storage; // grows on demand up to max_buffers

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
    // Started at the first full buffer: a stream smaller than one buffer (a
    // small export) costs no thread and one buffer, written at finish.
    std::thread worker;

    impl(byte_sink& d, const write_behind_options& o) : down(d), cap(o.buffer_size), max_buffers(o.buffers)
    {
        if (o.buffers < 2)
            throw std::invalid_argument("write_behind_sink: at least 2 buffers");
        if (o.buffer_size < 4096)
            throw std::invalid_argument("write_behind_sink: buffer_size must be at least 4096");
        storage.reserve(max_buffers);
    }

    ~impl()
    {
        if (!worker.joinable())
            return;
        {
            std::lock_guard lk(m);
            stopping = true;
        }
        cv.notify_all();
        worker.join();
    }

    char* new_buffer()
    {
        storage.push_back(std::make_unique_for_overwrite<char[]>(cap));
        return storage.back().get();
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

    /// Queues the producer's buffer and takes a free one (a new one while
    /// fewer than max_buffers exist, else waiting for the writer).
    void hand_over()
    {
        if (!worker.joinable())
            worker = std::thread([this] { run(); });
        std::unique_lock lk(m);
        full.emplace_back(cur, cur_len);
        cv.notify_all();
        cur_len = 0;
        if (empty.empty() && storage.size() < max_buffers) {
            cur = new_buffer();
            return;
        }
        cv.wait(lk, [&] { return !empty.empty(); });
        cur = empty.back();
        empty.pop_back();
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
        if (cur == nullptr && n > 0)
            cur = new_buffer();
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
        if (!worker.joinable()) {
            // Never filled a buffer: write the little there is right here.
            if (cur_len > 0) {
                written += down.write(cur, cur_len, out);
                cur_len = 0;
            }
        } else {
            if (cur_len > 0)
                hand_over();
            std::unique_lock lk(m);
            cv.wait(lk, [&] { return full.empty() && !writing; });
            out = ec;
        }
        if (!out)
            down.finish(out);
        std::lock_guard lk(m);
        if (out && !ec)
            ec = out;
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
