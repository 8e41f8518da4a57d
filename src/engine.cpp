#include <exportengine/engine.hpp>

#include <exportengine/csv_writer.hpp>
#include <exportengine/detail/request_hash.hpp>
#include <exportengine/write_behind_sink.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <limits>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace exportengine {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

/// 128 random bits from the kernel's CSPRNG, base64url: 22 characters of
/// [A-Za-z0-9_-]. Unguessable, and safe in paths, keys and file names.
std::string random_id()
{
    std::array<unsigned char, 16> bytes{};
    std::size_t got = 0;
    while (got < bytes.size()) {
        const ::ssize_t n = ::getrandom(bytes.data() + got, bytes.size() - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw std::system_error(errno, std::generic_category(), "getrandom");
        }
        got += static_cast<std::size_t>(n);
    }
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    out.reserve(22);
    std::uint32_t acc = 0;
    int bits = 0;
    for (const unsigned char b : bytes) {
        acc = (acc << 8) | b;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out.push_back(alphabet[(acc >> bits) & 0x3F]);
        }
    }
    if (bits > 0)
        out.push_back(alphabet[(acc << (6 - bits)) & 0x3F]);
    return out;
}

std::string default_owner()
{
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0)
        std::snprintf(host, sizeof host, "host");
    return std::string(host) + ":" + std::to_string(::getpid()) + ":" + random_id().substr(0, 8);
}

/// Per-running-job flags shared between the control thread and the job's
/// pipeline thread.
struct job_control {
    std::atomic<bool> stop{false};    // end the pipeline at the next batch
    std::atomic<bool> lost{false};    // our lease was taken: write nothing about the job
    std::atomic<bool> abandon{false}; // the engine is being destroyed (a crash)
    std::atomic<bool> recording{false}; // the result is being written: heartbeats end
    std::atomic<std::int64_t> rows{0};
};

/// What one run of a job's pipeline came to.
struct outcome {
    error_code ec{};        // none: published
    std::string detail{};   // for the log only
    bool cancelled = false; // stopped by the engine (stop or lost lease)
    std::int64_t rows = 0;
    published_file file{};
    bool recorded = false;  // the store has the result (or refused it)
    std::optional<export_job> next{}; // claimed for this job's slot right after recording
};

job_error user_error(const outcome& o, bool retries_exhausted)
{
    const error_code& ec = o.ec;
    if (ec == errc::source_schema || ec == errc::source_corrupt)
        return {"DATA_SOURCE_ERROR",
                "The export could not read its data. Contact support if regenerating it fails again."};
    if (ec == errc::source_busy || ec == errc::source_io)
        return {"DATA_SOURCE_UNAVAILABLE",
                std::string("The data source stayed busy or unreachable")
                    + (retries_exhausted ? " after several retries" : "")
                    + "; regenerate the export to try again."};
    if (ec == errc::internal_error)
        return {"INTERNAL_ERROR", "The export failed on our side; regenerate it to try again."};
    // Anything from the sink or the compressor: storage full or unavailable.
    return {"STORAGE_ERROR",
            "The export file could not be written (storage full or unavailable); regenerate the "
            "export to try again."};
}

} // namespace

// ---------------------------------------------------------------------------

struct engine::impl {
    executor_type host;
    job_store& store;
    data_source& source;
    storage_sink& sink;
    const url_signer& signer;
    const clock& clk;
    engine_options opt;
    engine_hooks hooks;
    std::string owner;

    // The control context first, the pools after: members are destroyed in
    // reverse, so the pools go first. A pool destroyed with work still queued
    // (an engine destroyed mid-job, like a crash) destroys that work, and the
    // coroutine handlers in it post their own cleanup to `ctl`: `ctl` must
    // still exist then (stopped, it only queues it; its destructor frees it).
    // TSan caught the other order as a use-after-free.
    asio::io_context ctl{1};
    asio::executor_work_guard<asio::io_context::executor_type> ctl_work{ctl.get_executor()};
    asio::steady_timer wake_timer{ctl};
    asio::steady_timer sweep_timer{ctl};
    asio::thread_pool io_pool;
    asio::thread_pool job_pool;
    std::thread ctl_thread;

    // Control-thread state (touched only on ctl).
    bool started = false;
    bool stopping = false;
    bool wake_pending = false;
    bool scheduler_running = false;
    bool sweeper_running = false;
    std::size_t running = 0;

    // Shared with other threads.
    std::atomic<bool> accepting{true};
    std::atomic<std::size_t> running_count{0};
    std::mutex active_mu;
    std::unordered_map<std::string, std::shared_ptr<job_control>> active;

    impl(executor_type h, job_store& st, data_source& src, storage_sink& sk, const url_signer& sg,
         const clock& c, engine_options o, engine_hooks hk)
        : host(std::move(h)), store(st), source(src), sink(sk), signer(sg), clk(c),
          opt(normalise(std::move(o))), hooks(std::move(hk)),
          owner(opt.owner.empty() ? default_owner() : opt.owner), io_pool(opt.io_threads),
          job_pool(opt.max_concurrent_jobs)
    {
        ctl_thread = std::thread([this] { ctl.run(); });
    }

    ~impl()
    {
        // A destroyed engine behaves like a crashed one: abandon every job
        // (its lease stays in the store and runs out), write nothing more.
        std::size_t abandoned = 0;
        {
            std::lock_guard lk(active_mu);
            for (auto& [id, c] : active) {
                c->abandon = true;
                c->stop = true;
                ++abandoned;
            }
        }
        if (abandoned > 0)
            log(log_level::warning, "engine destroyed while running: abandoning "
                                        + std::to_string(abandoned) + " jobs to their leases");
        ctl.stop();
        if (ctl_thread.joinable())
            ctl_thread.join();
        job_pool.stop();
        job_pool.join();
        io_pool.stop();
        io_pool.join();
    }

    static engine_options normalise(engine_options o)
    {
        if (o.max_concurrent_jobs == 0)
            o.max_concurrent_jobs = std::max(1u, std::thread::hardware_concurrency());
        o.io_threads = std::max<std::size_t>(1, o.io_threads);
        o.max_jobs_per_account = std::max(1, o.max_jobs_per_account);
        o.max_attempts = std::max(1, o.max_attempts);
        o.batch_rows = std::max<std::size_t>(1, o.batch_rows);
        return o;
    }

    // -- hooks -----------------------------------------------------------
    void log(log_level level, std::string_view line) const
    {
        if (hooks.log)
            hooks.log(level, line);
    }

    // Observer calls always happen on the control thread, one job's in the
    // order its changes were made:
    // - change_mu is held across each state change but a create (claim,
    //   complete, fail, release, requeue, expire, regenerate) and the posting
    //   of its notification, so none of those overtakes another;
    // - creates stay outside it, so that the store can commit several at
    //   once (sqlite_job_store's group commit); instead the new job's id is
    //   "announcing" from before the store call until the create's own
    //   notification reaches the control thread, and any other notification
    //   of that job (a claim that came first) waits for it. Nothing can
    //   change a job before its create commits, so held ones come after it.
    std::mutex change_mu;
    std::mutex announce_mu;
    std::unordered_set<std::string> announcing;                     // guarded by announce_mu
    std::unordered_map<std::string, std::vector<export_job>> held; // control thread only

    /// Posts the hook's call for `job` to the control thread; call it with
    /// change_mu held, right after the change.
    void notify(export_job job)
    {
        if (!hooks.on_state_change)
            return;
        asio::post(ctl, [this, job = std::move(job)]() mutable {
            {
                std::lock_guard lk(announce_mu);
                if (announcing.count(job.id) != 0) {
                    held[job.id].push_back(std::move(job));
                    return;
                }
            }
            call_hook(job);
        });
    }

    void call_hook(const export_job& job)
    {
        try {
            hooks.on_state_change(job);
        } catch (const std::exception& e) {
            log(log_level::error, std::string("state-change hook threw: ") + e.what());
        }
    }

    /// Before the create of job `id` (see change_mu).
    void begin_announce(const std::string& id)
    {
        if (!hooks.on_state_change)
            return;
        std::lock_guard lk(announce_mu);
        announcing.insert(id);
    }

    /// After it: posts its notification (none when nothing changed), then
    /// whatever waited for it.
    void end_announce(const std::string& id, std::optional<export_job> job)
    {
        if (!hooks.on_state_change)
            return;
        asio::post(ctl, [this, id, job = std::move(job)] {
            if (job)
                call_hook(*job);
            {
                std::lock_guard lk(announce_mu);
                announcing.erase(id);
            }
            if (auto it = held.find(id); it != held.end()) {
                const std::vector<export_job> waiting = std::move(it->second);
                held.erase(it);
                for (const export_job& j : waiting)
                    call_hook(j);
            }
        });
    }

    void wake()
    {
        asio::post(ctl, [this] {
            wake_pending = true;
            wake_timer.cancel();
        });
    }

    // -- API operations: a store call on the I/O pool, the result on the
    //    handler's executor (the host's by default). --------------------
    template <class T, class F>
    void api(handler<T> h, F f)
    {
        auto ex = asio::get_associated_executor(h, host);
        auto work = asio::prefer(ex, asio::execution::outstanding_work.tracked);
        asio::post(io_pool, [this, h = std::move(h), f = std::move(f), work = std::move(work)]() mutable {
            error_code ec;
            T result{};
            try {
                result = f(ec);
            } catch (const std::exception& e) {
                log(log_level::error, std::string("operation failed: ") + e.what());
                ec = errc::internal_error;
            }
            // dispatch: any_completion_executor offers no blocking.never,
            // and from a pool thread this queues on the handler's executor.
            asio::dispatch(work, [h = std::move(h), ec, result = std::move(result)]() mutable {
                std::move(h)(ec, std::move(result));
            });
        });
    }

    /// Live progress for the jobs this engine runs (the store has it only as
    /// of the last heartbeat).
    void overlay_progress(export_job& job)
    {
        if (job.status != export_status::processing || job.lease.owner != owner)
            return;
        std::lock_guard lk(active_mu);
        if (const auto it = active.find(job.id); it != active.end())
            job.row_count = it->second->rows.load(std::memory_order_relaxed);
    }

    // -- coroutine helpers ------------------------------------------------
    /// Runs `f` on `pool` and resumes the calling coroutine on ctl.
    ///
    /// Spelled out with async_initiate rather than co_spawn(pool, ...,
    /// use_awaitable): Asio 1.26 (Boost 1.81) may resume the awaiting
    /// coroutine on the pool thread, which would break the rule that all
    /// control state is touched on ctl only.
    template <class F>
    asio::awaitable<std::invoke_result_t<F&>> on(asio::thread_pool& pool, F f)
    {
        using R = std::invoke_result_t<F&>;
        co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                                void(std::exception_ptr, R)>(
            [this, &pool](auto handler, F fn) {
                asio::post(pool, [this, handler = std::move(handler), fn = std::move(fn)]() mutable {
                    std::exception_ptr ep;
                    R r{};
                    try {
                        r = fn();
                    } catch (...) {
                        ep = std::current_exception();
                    }
                    asio::post(ctl, [handler = std::move(handler), ep, r = std::move(r)]() mutable {
                        std::move(handler)(ep, std::move(r));
                    });
                });
            },
            asio::use_awaitable, std::move(f));
    }

    asio::awaitable<void> pause(std::chrono::milliseconds d)
    {
        asio::steady_timer t(ctl, d);
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    }

    // -- recovery, scheduler, sweeper ---------------------------------------
    asio::awaitable<void> run_start()
    {
        co_await sweep_once();
        if (stopping)
            co_return;
        scheduler_running = true;
        sweeper_running = true;
        asio::co_spawn(ctl, scheduler(), asio::detached);
        asio::co_spawn(ctl, sweeper(), asio::detached);
    }

    asio::awaitable<void> scheduler()
    {
        while (!stopping) {
            while (!stopping && running < opt.max_concurrent_jobs) {
                const timestamp now = clk.now();
                auto [ec, job] = co_await on(io_pool, [this, now] { return claim_one(now); });
                if (ec) {
                    log(log_level::error, "claiming a job failed: " + ec.message());
                    break;
                }
                if (!job || stopping) {
                    if (job) // claimed while stopping: give it straight back
                        co_await give_back(*job);
                    break;
                }
                start_job(std::move(*job));
            }
            if (stopping)
                break;
            if (wake_pending) {
                wake_pending = false;
                continue;
            }
            wake_timer.expires_after(opt.poll_interval);
            co_await wake_timer.async_wait(asio::as_tuple(asio::use_awaitable));
            wake_pending = false;
        }
        scheduler_running = false;
    }

    asio::awaitable<void> sweeper()
    {
        while (!stopping) {
            sweep_timer.expires_after(opt.sweep_interval);
            co_await sweep_timer.async_wait(asio::as_tuple(asio::use_awaitable));
            if (stopping)
                break;
            co_await sweep_once();
        }
        sweeper_running = false;
    }

    /// One sweep; returns the first store error (it goes on past errors).
    asio::awaitable<error_code> sweep_once()
    {
        const bool requeued = co_await on(io_pool, [this] { return requeue_expired_leases(); });
        if (requeued)
            wake();
        co_return co_await on(io_pool, [this] { return expire_delete_prune(); });
    }

    bool requeue_expired_leases()
    {
        error_code ec;
        std::vector<export_job> changed;
        {
            std::lock_guard lk(change_mu);
            // The store lists the file each lost claim may have published
            // among its files to delete (the sweep removes it).
            changed = store.requeue_expired_leases(
                clk.now(), opt.max_attempts,
                {"ATTEMPTS_EXHAUSTED", "The export was interrupted " + std::to_string(opt.max_attempts)
                                           + " times; regenerate it to try again."},
                ec).jobs;
            for (const export_job& j : changed)
                notify(j);
        }
        if (ec)
            log(log_level::error, "requeueing expired leases failed: " + ec.message());
        bool any_queued = false;
        for (const export_job& j : changed) {
            log(log_level::warning, "job " + j.id + " lost its lease; now " + std::string(to_string(j.status)));
            any_queued |= j.status == export_status::queued;
        }
        return any_queued;
    }

    error_code expire_delete_prune()
    {
        error_code first;
        const auto keep = [&first](const error_code& ec) {
            if (ec && !first)
                first = ec;
        };
        const timestamp now = clk.now();
        error_code ec;
        {
            std::lock_guard lk(change_mu);
            for (const export_job& j : store.expire_due(now, 1000, ec))
                notify(j);
        }
        keep(ec);
        ec = {};
        for (const file_to_delete& j : store.files_to_delete(1000, ec)) {
            error_code rec;
            sink.remove(j.file_key, rec);
            if (rec) {
                log(log_level::error, "deleting file " + j.file_key + " failed: " + rec.message());
                keep(rec);
                continue;
            }
            store.forget_file(j.job_id, j.file_key, rec);
            keep(rec);
        }
        keep(ec);
        ec = {};
        const std::int64_t pruned = store.prune(now - opt.record_retention, ec);
        keep(ec);
        if (pruned > 0)
            log(log_level::info, "pruned " + std::to_string(pruned) + " old job records");
        ec = {};
        const std::size_t stale = sink.remove_stale_temporaries(opt.stale_temporary_age, ec);
        keep(ec);
        if (stale > 0)
            log(log_level::info, "removed " + std::to_string(stale) + " stale temporary files");
        if (first)
            log(log_level::error, "sweep: " + first.message());
        return first;
    }

    /// Claims the next job for this engine (blocking: on a pool thread).
    std::pair<error_code, std::optional<export_job>> claim_one(timestamp now)
    {
        error_code e;
        std::lock_guard lk(change_mu);
        auto j = store.claim(owner, now, now + opt.lease_duration, opt.max_jobs_per_account, e);
        if (j)
            notify(*j);
        return {e, std::move(j)};
    }

    /// Returns a job claimed while the engine was stopping to the queue.
    asio::awaitable<void> give_back(const export_job& j)
    {
        auto release = [this, &j] {
            error_code e;
            std::lock_guard lk(change_mu);
            if (auto back = store.release(j.id, j.lease, clk.now(), e))
                notify(*back);
            return 0;
        };
        co_await on(io_pool, release);
    }

    // -- running one job ----------------------------------------------------
    void start_job(export_job job)
    {
        auto c = std::make_shared<job_control>();
        {
            std::lock_guard lk(active_mu);
            active[job.id] = c;
        }
        ++running;
        running_count.store(running);
        asio::co_spawn(ctl, run_job(std::move(job), c), asio::detached);
    }

    asio::awaitable<void> run_job(export_job job, std::shared_ptr<job_control> c)
    {
        log(log_level::info, "job " + job.id + " started (attempt " + std::to_string(job.attempt) + ")");
        auto done = std::make_shared<bool>(false);
        auto hb_timer = std::make_shared<asio::steady_timer>(ctl);
        asio::co_spawn(ctl, heartbeat(job.id, job.lease, c, hb_timer, done), asio::detached);

        outcome o = co_await execute_with_retries(job, *c);
        *done = true;
        hb_timer->cancel();
        if (!o.recorded && !c->abandon) {
            // Stopped while waiting to retry.
            auto write = [this, &job, &c, &o] {
                record(job, *c, o, false);
                return 0;
            };
            co_await on(io_pool, write);
        }
        if (o.next) {
            if (stopping)
                co_await give_back(*o.next);
            else
                start_job(std::move(*o.next));
        }

        {
            std::lock_guard lk(active_mu);
            active.erase(job.id);
        }
        --running;
        running_count.store(running);
        wake();
    }

    asio::awaitable<void> heartbeat(std::string id, job_lease l, std::shared_ptr<job_control> c,
                                    std::shared_ptr<asio::steady_timer> timer,
                                    std::shared_ptr<bool> done)
    {
        while (!*done) {
            timer->expires_after(opt.heartbeat_interval);
            co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
            if (*done)
                break;
            job_control* ctrl = c.get(); // kept alive by `c` in this frame
            auto beat = [this, &id, &l, ctrl] {
                error_code e;
                const timestamp now = clk.now();
                const bool r = store.heartbeat(id, l, now, now + opt.lease_duration,
                                               ctrl->rows.load(std::memory_order_relaxed), e);
                return std::pair{e, r};
            };
            const auto [ec, ok] = co_await on(io_pool, beat);
            if (*done || c->recording)
                break; // finished meanwhile: a refused renewal means nothing now
            if (ec) {
                // The store may be briefly unavailable; the lease has slack.
                log(log_level::warning, "heartbeat for job " + id + " failed: " + ec.message());
            } else if (!ok) {
                log(log_level::warning, "job " + id + " lost its lease; abandoning this attempt");
                c->lost = true;
                c->stop = true;
                break;
            }
        }
    }

    /// Runs the pipeline until it succeeds, fails for good or is stopped,
    /// retrying transient errors with backoff; the result is recorded in the
    /// store on the job-pool thread that ran the last attempt, straight
    /// after it (no hop through the control thread and the I/O pool: that
    /// took two thread switches off every job).
    asio::awaitable<outcome> execute_with_retries(const export_job& job, job_control& ctrl)
    {
        const auto first_try = std::chrono::steady_clock::now();
        std::chrono::milliseconds backoff = opt.retry_initial_backoff;
        for (;;) {
            auto run = [this, &job, &ctrl, first_try, backoff] {
                outcome o = execute_once(job, ctrl);
                const bool transient = o.ec && !o.cancelled && is_transient(o.ec);
                const bool exhausted =
                    transient && std::chrono::steady_clock::now() - first_try + backoff > opt.retry_budget;
                if (!transient || exhausted) {
                    ctrl.recording = true;
                    // This job's slot is free: claim the next job here, on
                    // this thread, rather than wake the scheduler to do it
                    // through two more thread switches (it still fills any
                    // other free slot) — for a published file in the same
                    // store transaction as the completion. Only while the
                    // engine accepts work.
                    const bool want_next = !ctrl.abandon && accepting.load();
                    const bool published = !o.ec && !o.cancelled;
                    if (!ctrl.abandon)
                        record(job, ctrl, o, exhausted, want_next && published ? &o.next : nullptr);
                    o.recorded = true;
                    if (want_next && !published) {
                        auto [cec, next] = claim_one(clk.now());
                        if (cec)
                            log(log_level::error, "claiming a job failed: " + cec.message());
                        o.next = std::move(next);
                    }
                }
                return o;
            };
            outcome o = co_await on(job_pool, run);
            if (o.recorded)
                co_return o;
            log(log_level::warning, "job " + job.id + ": transient error (" + o.ec.message() + ": "
                                        + o.detail + "); retrying in "
                                        + std::to_string(backoff.count()) + " ms");
            // Wait in slices, so a stop or a lost lease ends the wait early.
            for (auto waited = std::chrono::milliseconds{0}; waited < backoff && !ctrl.stop;) {
                const auto slice = std::min(backoff - waited, std::chrono::milliseconds{50});
                co_await pause(slice);
                waited += slice;
            }
            if (ctrl.stop)
                co_return outcome{.ec = o.ec, .detail = o.detail, .cancelled = true};
            backoff = std::min(backoff * 2, opt.retry_max_backoff);
            ctrl.rows = 0;
        }
    }

    /// The file this claim writes (export_file_key: id and lease token).
    std::string file_key(const export_job& job) const { return export_file_key(job, job.lease.token); }

    /// The pipeline, on a job-pool thread: source -> CSV -> (gzip) -> sink.
    outcome execute_once(const export_job& job, job_control& c) noexcept
    {
        try {
            source_error serr;
            std::unique_ptr<row_cursor> cursor = source.open(job, serr);
            if (serr || !cursor)
                return {.ec = serr.code ? serr.code : make_error_code(errc::source_io),
                        .detail = serr.detail};

            error_code ec;
            const std::string key = file_key(job);
            std::unique_ptr<sink_writer> file = sink.create(key, ec);
            if (ec || !file)
                return {.ec = ec ? ec : make_error_code(errc::sink_failed), .detail = "creating " + key};

            // source -> CSV -> (gzip) -> write-behind -> file: the file's
            // write(2) and checksum run on the write-behind thread while this
            // one reads and formats the next rows.
            write_behind_sink behind(*file, {.buffer_size = opt.csv_buffer_size});
            std::optional<gzip_sink> gz;
            if (job.request.format.compression == compression_kind::gzip)
                gz.emplace(behind, opt.gzip);
            byte_sink& out = gz ? static_cast<byte_sink&>(*gz) : behind;

            csv_writer csv(source.columns(job.request.type), out,
                           {.delimiter = job.request.format.delimiter,
                            .bom = job.request.format.bom,
                            .buffer_size = opt.csv_buffer_size});
            csv.write_header();
            std::int64_t rows = 0;
            for (;;) {
                if (c.stop)
                    return {.cancelled = true, .rows = rows};
                const std::size_t n = cursor->next_batch(csv, opt.batch_rows, serr);
                rows += static_cast<std::int64_t>(n);
                c.rows.store(rows, std::memory_order_relaxed);
                if (serr)
                    return {.ec = serr.code, .detail = serr.detail, .rows = rows};
                if (csv.error())
                    return {.ec = csv.error(), .detail = "writing " + key, .rows = rows};
                if (n == 0)
                    break;
            }
            csv.finish(ec);
            if (ec)
                return {.ec = ec, .detail = "finishing " + key, .rows = rows};
            if (c.lost || c.abandon)
                return {.cancelled = true, .rows = rows};
            published_file pub = file->publish(ec);
            if (ec)
                return {.ec = ec, .detail = "publishing " + key, .rows = rows};
            return {.rows = rows, .file = std::move(pub)};
        } catch (const std::exception& e) {
            return {.ec = make_error_code(errc::internal_error), .detail = e.what()};
        }
    }

    /// Writes a final outcome to the store (blocking: on a pool thread).
    /// With `next`, a completion also claims the next job in the same store
    /// transaction (job_store::complete_and_claim) and notifies it.
    void record(const export_job& job, job_control& ctrl, const outcome& o, bool exhausted,
                std::optional<export_job>* next = nullptr)
    {
        job_control* c = &ctrl;
        {
            std::lock_guard lk(change_mu);
            error_code ec;
            const timestamp now = clk.now();
            std::optional<export_job> after;
            if (!o.ec && !o.cancelled) {
                const completion done{.row_count = o.rows,
                                      .file_size = o.file.size,
                                      .checksum = o.file.sha256,
                                      .file_key = o.file.key,
                                      .completed_at = now,
                                      .expires_at = now + opt.file_retention};
                if (next != nullptr) {
                    auto r = store.complete_and_claim(
                        {.id = job.id,
                         .lease = job.lease,
                         .result = done,
                         .now = now,
                         .next = claim_request{.owner = owner,
                                               .now = now,
                                               .lease_until = now + opt.lease_duration,
                                               .per_account_limit = opt.max_jobs_per_account}},
                        ec);
                    after = std::move(r.completed);
                    *next = std::move(r.next);
                    if (r.claim_error)
                        log(log_level::error, "claiming a job failed: " + r.claim_error.message());
                } else {
                    after = store.complete(job.id, job.lease, done, now, ec);
                }
                if (!after) {
                    // Our lease went to another worker (or the store failed):
                    // this file is nobody's. Remove it.
                    error_code rec;
                    sink.remove(o.file.key, rec);
                }
            } else if (o.cancelled) {
                if (!c->lost)
                    after = store.release(job.id, job.lease, now, ec);
            } else {
                log(log_level::error, "job " + job.id + " failed: " + o.ec.message()
                                          + (o.detail.empty() ? "" : " (" + o.detail + ")"));
                after = store.fail(job.id, job.lease, user_error(o, exhausted), now, ec);
            }
            if (ec == errc::lease_lost)
                log(log_level::warning, "job " + job.id + ": lease lost before its result was recorded");
            else if (ec)
                log(log_level::error, "recording job " + job.id + " failed: " + ec.message()
                                          + "; its lease will run out and it will be retried");
            if (after) {
                log(log_level::info, "job " + job.id + " " + std::string(to_string(after->status))
                                         + " (" + std::to_string(o.rows) + " rows)");
                notify(*after);
            }
            if (next != nullptr && *next)
                notify(**next);
        }
    }

    // -- stop -----------------------------------------------------------------
    asio::awaitable<void> run_stop(std::chrono::milliseconds deadline)
    {
        stopping = true;
        accepting = false;
        wake_timer.cancel();
        sweep_timer.cancel();
        const auto until = std::chrono::steady_clock::now() + deadline;
        while (running > 0 && std::chrono::steady_clock::now() < until)
            co_await pause(std::chrono::milliseconds{5});
        if (running > 0) {
            {
                std::lock_guard lk(active_mu);
                for (auto& [id, c] : active)
                    c->stop = true;
            }
            log(log_level::info, "stop deadline passed: cancelled " + std::to_string(running)
                                     + " running jobs; they go back to the queue");
        }
        while (running > 0 || scheduler_running || sweeper_running)
            co_await pause(std::chrono::milliseconds{5});
        log(log_level::info, "engine stopped");
    }
};

// ---------------------------------------------------------------------------

engine::engine(executor_type host, job_store& store, data_source& source, storage_sink& sink,
               const url_signer& signer, const clock& clock, engine_options options,
               engine_hooks hooks)
    : impl_(std::make_unique<impl>(std::move(host), store, source, sink, signer, clock,
                                   std::move(options), std::move(hooks)))
{
}

engine::~engine() = default;

engine::executor_type engine::get_executor() const noexcept { return impl_->host; }
const engine_options& engine::options() const noexcept { return impl_->opt; }
const std::string& engine::owner() const noexcept { return impl_->owner; }
std::size_t engine::running_jobs() const noexcept { return impl_->running_count.load(); }

void engine::start()
{
    asio::post(impl_->ctl, [this] {
        if (impl_->started || impl_->stopping)
            return;
        impl_->started = true;
        asio::co_spawn(impl_->ctl, impl_->run_start(), asio::detached);
    });
}

void engine::do_stop(std::chrono::milliseconds deadline, void_handler h)
{
    auto ex = asio::get_associated_executor(h, impl_->host);
    auto work = asio::prefer(ex, asio::execution::outstanding_work.tracked);
    asio::co_spawn(impl_->ctl, impl_->run_stop(deadline),
                   [h = std::move(h), work = std::move(work)](std::exception_ptr) mutable {
                       asio::dispatch(work, [h = std::move(h)]() mutable { std::move(h)(error_code{}); });
                   });
}

void engine::do_create(std::int64_t account, export_request r, std::optional<std::string> key,
                       handler<export_snapshot> h)
{
    impl_->api<export_snapshot>(std::move(h), [this, account, r = std::move(r),
                                               key = std::move(key)](error_code& ec) mutable {
        impl& m = *impl_;
        if (!m.accepting) {
            ec = errc::shutting_down;
            return export_snapshot{};
        }
        if (account <= 0 || !validate_request(r, m.opt.limits).empty()
            || (key && (key->empty() || key->size() > 255))) {
            ec = errc::invalid_request;
            return export_snapshot{};
        }
        const timestamp now = m.clk.now();
        std::optional<idempotency_key> idem;
        if (key)
            idem = idempotency_key{.key = *key,
                                   .request_hash = detail::request_hash(r),
                                   .not_before = now - m.opt.idempotency_window};
        const std::string new_id = random_id();
        m.begin_announce(new_id);
        create_result res =
            m.store.create({.id = new_id, .account_id = account, .request = std::move(r), .created_at = now},
                           idem, ec);
        m.end_announce(new_id, !ec && res.created ? std::optional<export_job>(res.job) : std::nullopt);
        if (ec)
            return export_snapshot{};
        if (!res.created) {
            // SPEC §3: a replay returns the first answer — the job as it was
            // created (queued), whatever it has become since.
            export_job first = res.job;
            first.status = export_status::queued;
            first.updated_at = first.created_at;
            first.completed_at.reset();
            first.expires_at.reset();
            first.row_count.reset();
            first.file_size.reset();
            first.error.reset();
            first.attempt = 0;
            first.lease = {};
            first.lease_expires_at.reset();
            first.checksum.clear();
            first.file_key.clear();
            return export_snapshot{std::move(first), first.created_at};
        }
        m.wake();
        return export_snapshot{std::move(res.job), now};
    });
}

void engine::do_list(std::int64_t account, std::int64_t page, std::int64_t limit,
                     handler<export_list> h)
{
    impl_->api<export_list>(std::move(h), [this, account, page, limit](error_code& ec) {
        impl& m = *impl_;
        if (page < 0 || limit < 1 || limit > 100) {
            ec = errc::invalid_request;
            return export_list{};
        }
        // Beyond any real page, and safe from overflow in page * limit.
        const std::int64_t safe_page = std::min<std::int64_t>(page, 1'000'000'000'000'000 / limit);
        job_page p = m.store.list(account, safe_page, limit, ec);
        if (ec)
            return export_list{};
        for (export_job& j : p.jobs)
            m.overlay_progress(j);
        return export_list{std::move(p.jobs), p.total, page, limit, m.clk.now()};
    });
}

void engine::do_get(std::int64_t account, std::string id, handler<export_snapshot> h)
{
    impl_->api<export_snapshot>(std::move(h), [this, account, id = std::move(id)](error_code& ec) {
        impl& m = *impl_;
        auto job = m.store.get(account, id, ec);
        if (ec)
            return export_snapshot{};
        if (!job) {
            ec = errc::not_found;
            return export_snapshot{};
        }
        m.overlay_progress(*job);
        return export_snapshot{std::move(*job), m.clk.now()};
    });
}

void engine::do_download_url(std::int64_t account, std::string id, handler<download_link> h)
{
    impl_->api<download_link>(std::move(h), [this, account, id = std::move(id)](error_code& ec) {
        impl& m = *impl_;
        auto job = m.store.get(account, id, ec);
        if (ec)
            return download_link{};
        if (!job) {
            ec = errc::not_found;
            return download_link{};
        }
        const timestamp now = m.clk.now();
        switch (job->effective_status(now)) {
        case export_status::queued:
        case export_status::processing:
            ec = errc::export_not_ready;
            return download_link{};
        case export_status::expired:
            ec = errc::export_expired;
            return download_link{};
        case export_status::failed:
            ec = errc::export_failed;
            return download_link{};
        case export_status::available:
            break;
        }
        download_link link;
        link.export_id = job->id;
        link.file_expires_at = *job->expires_at;
        link.expires_at = std::min(now + m.opt.url_ttl, link.file_expires_at);
        link.url = m.signer.sign("GET", "/downloads/" + job->id, link.expires_at);
        link.row_count = job->row_count.value_or(0);
        link.file_size = job->file_size.value_or(0);
        link.content_type = download_content_type(*job);
        link.filename = download_filename(*job);
        return link;
    });
}

void engine::do_find_download(std::string path, std::string expires, std::string signature,
                              handler<download_file> h)
{
    impl_->api<download_file>(std::move(h), [this, path = std::move(path), expires = std::move(expires),
                                             signature = std::move(signature)](error_code& ec) {
        impl& m = *impl_;
        static constexpr std::string_view prefix = "/downloads/";
        const timestamp now = m.clk.now();
        if (!path.starts_with(prefix)
            || !m.signer.verify({.method = "GET", .path = path, .expires = expires, .signature = signature},
                                now)) {
            ec = errc::not_found;
            return download_file{};
        }
        const std::string_view id = std::string_view(path).substr(prefix.size());
        auto job = m.store.find(id, ec);
        if (ec)
            return download_file{};
        if (!job || !job->is_available_for_download(now) || job->file_key.empty()) {
            ec = errc::not_found;
            return download_file{};
        }
        return download_file{
            .export_id = job->id,
            .file_key = job->file_key,
            .file_size = job->file_size.value_or(0),
            .content_type = std::string(download_content_type(*job)),
            .filename = download_filename(*job),
        };
    });
}

void engine::do_regenerate(std::int64_t account, std::string id, std::optional<std::string> key,
                           handler<export_snapshot> h)
{
    impl_->api<export_snapshot>(std::move(h), [this, account, id = std::move(id),
                                               key = std::move(key)](error_code& ec) {
        impl& m = *impl_;
        if (!m.accepting) {
            ec = errc::shutting_down;
            return export_snapshot{};
        }
        if (key && (key->empty() || key->size() > 255)) {
            ec = errc::invalid_request;
            return export_snapshot{};
        }
        const timestamp now = m.clk.now();
        std::optional<idempotency_key> idem;
        if (key)
            idem = idempotency_key{.key = *key,
                                   .request_hash = detail::regenerate_hash(id),
                                   .not_before = now - m.opt.idempotency_window};
        std::optional<regenerate_result> res;
        {
            std::lock_guard lk(m.change_mu);
            res = m.store.regenerate(account, id, now, idem, ec);
            if (!ec && res && res->regenerated)
                m.notify(res->job);
        }
        if (ec || !res) {
            if (!ec)
                ec = errc::not_found;
            return export_snapshot{};
        }
        if (res->regenerated) {
            m.wake();
        } else {
            m.overlay_progress(res->job);
        }
        return export_snapshot{std::move(res->job), now};
    });
}

void engine::do_sweep(void_handler h)
{
    auto ex = asio::get_associated_executor(h, impl_->host);
    auto work = asio::prefer(ex, asio::execution::outstanding_work.tracked);
    asio::co_spawn(impl_->ctl, impl_->sweep_once(),
                   [h = std::move(h), work = std::move(work)](std::exception_ptr e,
                                                              error_code ec) mutable {
                       if (e)
                           ec = errc::internal_error;
                       asio::dispatch(work, [h = std::move(h), ec]() mutable { std::move(h)(ec); });
                   });
}

} // namespace exportengine
