// The engine's facade: the five operations of the API, start, stop and
// sweep, over the parts in src/engine/ (see core.hpp for the map).
#include <exportengine/engine.hpp>

#include "engine/core.hpp"
#include "engine/notifier.hpp"
#include "engine/scheduler.hpp"
#include "engine/sweeper.hpp"
#include "engine/transitions.hpp"
#include "engine/waits.hpp"

#include <exportengine/detail/request_hash.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <thread>

namespace exportengine {

namespace asio = boost::asio;
using boost::system::error_code;

namespace detail {

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

std::string user_message(const error_code& ec)
{
    if (ec.category() == error_category()) {
        switch (static_cast<errc>(ec.value())) {
        case errc::not_found:
        case errc::invalid_request:
        case errc::export_not_ready:
        case errc::export_expired:
        case errc::export_failed:
        case errc::export_not_expired:
        case errc::idempotency_key_reused:
        case errc::shutting_down:
        case errc::download_forbidden:
            return ec.message();
        default:
            break;
        }
    }
    if (ec == asio::error::operation_aborted)
        return "The operation was cancelled.";
    return make_error_code(errc::internal_error).message();
}

void explain(diagnostics* diag, const error_code& ec, std::string why)
{
    if (diag == nullptr)
        return;
    if (!ec)
        why.clear();
    else if (why.empty())
        why = user_message(ec);
    diagnostics_access::assign(*diag, std::move(why));
}

namespace {

std::string default_owner()
{
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0)
        std::snprintf(host, sizeof host, "host");
    return std::string(host) + ":" + std::to_string(::getpid()) + ":" + random_id().substr(0, 8);
}

engine_options normalise(engine_options o)
{
    if (o.max_concurrent_jobs == 0)
        o.max_concurrent_jobs = std::max(1u, std::thread::hardware_concurrency());
    o.io_threads = std::max<std::size_t>(1, o.io_threads);
    o.max_jobs_per_account = std::max(1, o.max_jobs_per_account);
    o.max_attempts = std::max(1, o.max_attempts);
    o.batch_rows = std::max<std::size_t>(1, o.batch_rows);
    if (o.owner.empty())
        o.owner = default_owner();
    return o;
}

} // namespace

engine_core::engine_core(engine::executor_type h, job_store& st, data_source& src, storage_sink& sk,
                         const url_signer& sg, const time_source& c, engine_options o, engine_hooks hk)
    : host(std::move(h)), store(st), source(src), sink(sk), signer(sg), clk(c), opt(normalise(std::move(o))),
      hooks(std::move(hk)), owner(opt.owner), io_pool(opt.io_threads), job_pool(opt.max_concurrent_jobs)
{
}

} // namespace detail

// ---------------------------------------------------------------------------

struct engine::impl : detail::engine_core {
    detail::waits waits{*this};
    detail::notifier notifier{*this, waits};
    detail::transitions transitions{*this, notifier};
    detail::scheduler scheduler{*this, transitions};
    detail::sweeper sweeper{*this, transitions, [this] { scheduler.wake(); }};
    std::thread ctl_thread;
    /// Other processes' work, as the store tells it (nullptr: poll only).
    /// Set and reset on ctl; reset last in the destructor.
    std::unique_ptr<store_watch> work_watch;

    // ctl only.
    bool started = false;
    bool stopping = false;
    // API operations check it on their pool threads.
    std::atomic<bool> accepting{true};

    impl(executor_type h, job_store& st, data_source& src, storage_sink& sk, const url_signer& sg,
         const time_source& c, engine_options o, engine_hooks hk)
        : engine_core(std::move(h), st, src, sk, sg, c, std::move(o), std::move(hk))
    {
        ctl_thread = std::thread([this] { ctl.run(); });
    }

    ~impl()
    {
        // A destroyed engine behaves like a crashed one: every job is
        // abandoned (its lease stays in the store and runs out) and nothing
        // more is written.
        scheduler.abandon_all();
        ctl.stop();
        if (ctl_thread.joinable())
            ctl_thread.join();
        work_watch.reset(); // no wake-up after this
        job_pool.stop();
        job_pool.join();
        io_pool.stop();
        io_pool.join();
    }

    /// An API operation: `f(ec, why)` on the I/O pool, the result on the
    /// handler's executor (the host's by default). `why` is the failure's
    /// sentence for the user when there is a more specific one than the
    /// code's; `diag`, when given, gets it before the handler runs.
    template <class T, class F>
    void api(diagnostics* diag, handler<T> h, F f)
    {
        auto ex = asio::get_associated_executor(h, host);
        auto work = asio::prefer(ex, asio::execution::outstanding_work.tracked);
        asio::post(io_pool, [this, diag, h = std::move(h), f = std::move(f), work = std::move(work)]() mutable {
            error_code ec;
            std::string why;
            T result{};
            try {
                result = f(ec, why);
            } catch (const std::exception& e) {
                log(log_level::error, std::string("operation failed: ") + e.what());
                ec = errc::internal_error;
                why.clear();
            }
            if (diag)
                detail::explain(diag, ec, std::move(why));
            // dispatch: any_completion_executor offers no blocking.never,
            // and from a pool thread this queues on the handler's executor.
            asio::dispatch(work, [h = std::move(h), ec, result = std::move(result)]() mutable {
                std::move(h)(ec, std::move(result));
            });
        });
    }

    /// Recovery (a sweep), then the scheduler and the sweeper's loop.
    asio::awaitable<void> run_start()
    {
        co_await sweeper.sweep_once();
        if (stopping)
            co_return;
        asio::co_spawn(ctl, scheduler.run(), asio::detached);
        asio::co_spawn(ctl, sweeper.run(), asio::detached);
        try {
            work_watch = store.watch([this] { scheduler.wake(); });
        } catch (const std::exception& e) {
            log(log_level::warning, std::string("no wake-ups from the store (polling): ") + e.what());
        }
    }

    asio::awaitable<void> run_stop(std::chrono::milliseconds deadline)
    {
        stopping = true;
        accepting = false;
        waits.refuse_new();
        sweeper.stop();
        work_watch.reset();
        co_await scheduler.stop(deadline);
        co_await sweeper.wait_stopped(); // a sweep in progress finishes first
        // Jobs that finished during the grace period have completed their
        // waits; the rest will not finish here.
        co_await waits.stop();
        log(log_level::info, "engine stopped");
    }
};

// ---------------------------------------------------------------------------

namespace {

/// What is wrong with an idempotency key, or "" (contract §3: 1 to 255 bytes).
std::string key_problem(const std::string& key)
{
    if (key.empty() || key.size() > 255)
        return "An idempotency key must be 1 to 255 bytes long.";
    return {};
}

/// Why `job` has no file to download at `now` (it is not available): the
/// code, and its sentence in `why`.
error_code not_downloadable(const export_job& job, timestamp now, std::string& why)
{
    switch (job.effective_status(now)) {
    case export_status::queued:
        why = "The export is queued and not ready yet; wait until it is available for download, "
              "then ask again.";
        return errc::export_not_ready;
    case export_status::processing:
        why = "The export is still being written; wait until it is available for download, then ask "
              "again.";
        return errc::export_not_ready;
    case export_status::failed:
        why = "The export failed, so there is no file to download. "
              + (job.error && !job.error->message.empty() ? job.error->message
                                                          : std::string("Regenerate it to try again."));
        return errc::export_failed;
    case export_status::expired:
    case export_status::available: // not reached: the caller checked
        break;
    }
    return errc::export_expired;
}

} // namespace

engine::engine(executor_type host, job_store& store, data_source& source, storage_sink& sink,
               const url_signer& signer, const time_source& time, engine_options options,
               engine_hooks hooks)
    : impl_(std::make_unique<impl>(std::move(host), store, source, sink, signer, time,
                                   std::move(options), std::move(hooks)))
{
}

engine::~engine() = default;

engine::executor_type engine::get_executor() const noexcept { return impl_->host; }
const engine_options& engine::options() const noexcept { return impl_->opt; }
const std::string& engine::owner() const noexcept { return impl_->owner; }
std::size_t engine::running_jobs() const noexcept { return impl_->scheduler.running(); }

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
                       diagnostics* diag, handler<export_snapshot> h)
{
    impl_->api<export_snapshot>(diag, std::move(h), [this, account, r = std::move(r), key = std::move(key)](
                                                        error_code& ec, std::string& why) mutable {
        impl& m = *impl_;
        // The request first: a bad one stays bad, and "retry in a moment"
        // would be the wrong advice for it.
        why = account <= 0 ? std::string("The account id must be a positive integer.")
                           : validate_request(r, m.opt.limits);
        if (why.empty() && key)
            why = key_problem(*key);
        if (!why.empty()) {
            ec = errc::invalid_request;
            return export_snapshot{};
        }
        if (!m.accepting) {
            ec = errc::shutting_down;
            return export_snapshot{};
        }
        const timestamp now = m.clk.now();
        std::optional<idempotency_key> idem;
        if (key)
            idem = idempotency_key{.key = *key,
                                   .request_hash = detail::request_hash(r),
                                   .not_before = now - m.opt.idempotency_window};
        create_result res = m.transitions.create(
            {.id = detail::random_id(), .account_id = account, .request = std::move(r), .created_at = now},
            idem, ec);
        if (ec)
            return export_snapshot{};
        if (!res.created) {
            // contract §3: a replay returns the first answer — the job as it was
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
        m.scheduler.wake();
        return export_snapshot{std::move(res.job), now};
    });
}

void engine::do_list(std::int64_t account, std::int64_t page, std::int64_t limit, diagnostics* diag,
                     handler<export_list> h)
{
    impl_->api<export_list>(diag, std::move(h), [this, account, page, limit](error_code& ec, std::string& why) {
        impl& m = *impl_;
        if (page < 0 || limit < 1 || limit > 100) {
            ec = errc::invalid_request;
            why = "The page must be 0 or more and the limit from 1 to 100.";
            return export_list{};
        }
        // Beyond any real page, and safe from overflow in page * limit.
        const std::int64_t safe_page = std::min<std::int64_t>(page, 1'000'000'000'000'000 / limit);
        job_page p = m.store.list(account, safe_page, limit, ec);
        if (ec)
            return export_list{};
        for (export_job& j : p.jobs)
            m.scheduler.overlay_progress(j);
        return export_list{std::move(p.jobs), p.total, page, limit, m.clk.now()};
    });
}

void engine::do_get(std::int64_t account, std::string id, diagnostics* diag, handler<export_snapshot> h)
{
    impl_->api<export_snapshot>(diag, std::move(h), [this, account, id = std::move(id)](error_code& ec,
                                                                                        std::string&) {
        impl& m = *impl_;
        auto job = m.store.get(account, id, ec);
        if (ec)
            return export_snapshot{};
        if (!job) {
            ec = errc::not_found;
            return export_snapshot{};
        }
        m.scheduler.overlay_progress(*job);
        return export_snapshot{std::move(*job), m.clk.now()};
    });
}

void engine::do_download_url(std::int64_t account, std::string id, diagnostics* diag, handler<download_link> h)
{
    impl_->api<download_link>(diag, std::move(h), [this, account, id = std::move(id)](error_code& ec,
                                                                                      std::string& why) {
        impl& m = *impl_;
        auto job = m.store.get(account, id, ec);
        if (ec)
            return download_link{};
        if (!job) {
            ec = errc::not_found;
            return download_link{};
        }
        const timestamp now = m.clk.now();
        if (!job->is_available_for_download(now)) {
            ec = not_downloadable(*job, now, why);
            return download_link{};
        }
        download_link link;
        link.export_id = job->id;
        link.file_expires_at = *job->expires_at;
        link.expires_at = std::min(now + m.opt.url_ttl, link.file_expires_at);
        link.row_count = job->row_count.value_or(0);
        link.file_size = job->file_size.value_or(0);
        link.content_type = download_content_type(*job);
        link.filename = download_filename(*job);
        // The sink's own URL (S3: presigned GET) or, for a sink that serves
        // its own bytes, the signer's route.
        const download_object object{.export_id = job->id,
                                     .key = job->file_key,
                                     .filename = link.filename,
                                     .content_type = link.content_type,
                                     .size = link.file_size};
        auto direct = m.sink.download_url(object, link.expires_at, ec);
        if (ec)
            return download_link{};
        link.url = direct ? std::move(*direct) : m.signer.sign(object, link.expires_at);
        return link;
    });
}

void engine::do_find_download(std::string method, std::string target, diagnostics* diag,
                              handler<download_file> h)
{
    impl_->api<download_file>(diag, std::move(h), [this, method = std::move(method), target = std::move(target)](
                                                      error_code& ec, std::string& why) {
        impl& m = *impl_;
        const timestamp now = m.clk.now();
        // The signer owns the route: it parses and verifies the target.
        const std::string_view id = m.signer.verify({.method = method, .target = target}, now);
        if (id.empty()) {
            ec = errc::download_forbidden;
            return download_file{};
        }
        // A link the signer grants: its export may still have gone, or have
        // been regenerated, since the link was made.
        auto job = m.store.find(id, ec);
        if (ec)
            return download_file{};
        if (!job || (job->is_available_for_download(now) && job->file_key.empty())) {
            ec = errc::not_found;
            why = "The export of this download link no longer exists.";
            return download_file{};
        }
        if (!job->is_available_for_download(now)) {
            ec = not_downloadable(*job, now, why);
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
                           diagnostics* diag, handler<export_snapshot> h)
{
    impl_->api<export_snapshot>(diag, std::move(h), [this, account, id = std::move(id), key = std::move(key)](
                                                        error_code& ec, std::string& why) {
        impl& m = *impl_;
        if (key)
            why = key_problem(*key);
        if (!why.empty()) {
            ec = errc::invalid_request;
            return export_snapshot{};
        }
        if (!m.accepting) {
            ec = errc::shutting_down;
            return export_snapshot{};
        }
        const timestamp now = m.clk.now();
        std::optional<idempotency_key> idem;
        if (key)
            idem = idempotency_key{.key = *key,
                                   .request_hash = detail::regenerate_hash(id),
                                   .not_before = now - m.opt.idempotency_window};
        std::optional<regenerate_result> res = m.transitions.regenerate(account, id, idem, ec);
        if (ec || !res) {
            if (!ec)
                ec = errc::not_found;
            return export_snapshot{};
        }
        if (res->regenerated)
            m.scheduler.wake();
        else
            m.scheduler.overlay_progress(res->job);
        return export_snapshot{std::move(res->job), now};
    });
}

void engine::do_wait(std::int64_t account, std::string id, diagnostics* diag, handler<export_snapshot> h)
{
    impl_->waits.start(account, std::move(id), diag, std::move(h));
}

void engine::do_sweep(void_handler h)
{
    auto ex = asio::get_associated_executor(h, impl_->host);
    auto work = asio::prefer(ex, asio::execution::outstanding_work.tracked);
    asio::co_spawn(impl_->ctl, impl_->sweeper.sweep_once(),
                   [h = std::move(h), work = std::move(work)](std::exception_ptr e,
                                                              error_code ec) mutable {
                       if (e)
                           ec = errc::internal_error;
                       asio::dispatch(work, [h = std::move(h), ec]() mutable { std::move(h)(ec); });
                   });
}

} // namespace exportengine
