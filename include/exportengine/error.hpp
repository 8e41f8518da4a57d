// exportengine/error.hpp — the library's error codes.
//
// Every failure the library reports is a boost::system::error_code. Codes from
// the operating system (ENOSPC from a file sink, say) pass through unchanged;
// the library's own conditions are the values of `exportengine::errc` below,
// in `exportengine::error_category()`. The HTTP layer maps these codes (never
// message strings) to status codes.
#pragma once

#include <boost/system/error_code.hpp>

#include <string>
#include <type_traits>
#include <utility>

namespace exportengine {

/// The library's own error conditions. Values are stable: they are logged and
/// may be stored, so new codes are only ever appended.
enum class errc {
    /// A CSV row had more or fewer fields than its schema has columns. This is
    /// a bug in the data source, never in the data.
    csv_row_shape = 1,
    /// A timestamp outside years 0000..9999 cannot be written as
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    timestamp_out_of_range,
    /// zlib refused to compress (out of memory, or an internal zlib error).
    compression_failed,
    /// A write after `finish()`, or after an earlier error on the same stream.
    stream_closed,

    // -- the five operations (contract §3); the API maps each to a status code --
    /// No such export for this account (or any malformed id): 404.
    not_found,
    /// The request breaks a rule of contract §3 (see validate_request): 400.
    invalid_request,
    /// Download asked for a queued or processing export: 400 EXPORT_NOT_READY.
    export_not_ready,
    /// Download asked for an expired export: 400 EXPORT_EXPIRED.
    export_expired,
    /// Download asked for a failed export: 400 EXPORT_FAILED.
    export_failed,
    /// Regenerate asked for an export that is not expired or failed:
    /// 400 EXPORT_NOT_EXPIRED.
    export_not_expired,
    /// The idempotency key was used with a different request: 400.
    idempotency_key_reused,
    /// The engine is stopping and takes no new work: 503.
    shutting_down,

    // -- data sources ------------------------------------------------------
    /// The source is locked or busy; retrying may succeed.
    source_busy,
    /// The source hit an I/O error; retrying may succeed.
    source_io,
    /// The source lacks a table or column the export needs: not retryable.
    source_schema,
    /// The source's data is corrupt or unreadable: not retryable.
    source_corrupt,

    // -- storage -----------------------------------------------------------
    /// The job store failed (disk, lock, corruption): 500.
    store_failed,
    /// The file sink failed (disk full, I/O): the job is retried or failed.
    sink_failed,
    /// A write about a job by a worker whose lease is no longer current.
    lease_lost,
    /// An unexpected failure inside the engine (an exception from a
    /// component); details go to the log only: 500.
    internal_error,
    /// A download link the url_signer refuses: not its route, a signature
    /// that is missing, wrong or made with an unknown key, or an expiry
    /// passed: 403.
    download_forbidden,
};

class diagnostics;
namespace detail {
struct diagnostics_access;
}

/// Why an engine operation failed, in a sentence for the end user, beside
/// its error_code (Boost.MySQL's `diagnostics` pattern). Pass one to an
/// engine operation's overload that takes it; the engine fills it before the
/// completion handler runs. See "Diagnostics" in engine.hpp.
///
/// Thread safety: none of its own. While an operation that was given it is
/// pending, the engine writes it (from one of its threads) and the caller
/// must neither read nor destroy it; the completion handler, and anything
/// that runs after it (a resumed coroutine, a future's get()), may read it.
class diagnostics {
public:
    diagnostics() = default;

    /// The sentence for the end user after a failed operation — the specific
    /// reason where there is one (the rule a request broke, the failed
    /// export's own error), else the code's generic sentence; never
    /// internals (SQL, paths, exception text) and never an HTTP route.
    /// Empty after a successful one.
    [[nodiscard]] const std::string& message() const noexcept { return message_; }

    /// Empties it.
    void clear() noexcept { message_.clear(); }

private:
    friend struct detail::diagnostics_access;
    std::string message_;
};

namespace detail {
/// The engine's way in (not for hosts).
struct diagnostics_access {
    static void assign(diagnostics& d, std::string message) { d.message_ = std::move(message); }
};
} // namespace detail

/// True for source and sink errors that a retry with backoff may cure
/// (busy, I/O, disk full); false for those it cannot (missing table, corrupt
/// data), which fail a job at once.
[[nodiscard]] bool is_transient(const boost::system::error_code& ec) noexcept;

/// The category of `errc`; its name is "exportengine".
[[nodiscard]] const boost::system::error_category& error_category() noexcept;

/// Makes an error_code in `error_category()`; found by ADL, so
/// `error_code ec = errc::csv_row_shape;` works.
[[nodiscard]] inline boost::system::error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), error_category()};
}

} // namespace exportengine

template <>
struct boost::system::is_error_code_enum<exportengine::errc> : std::true_type {};
