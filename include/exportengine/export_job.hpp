// exportengine/export_job.hpp — export jobs: states, requests, records.
//
// The state machine of contract §2:
//
//     (new) -> queued -> processing -> available -> expired
//                ^          |   \                     |
//                |          |    `-> failed           |
//                `----------'          |              |
//                (lease lost)          `--------------+--> queued (regenerate)
//
// `is_legal_transition` is the one function that decides which changes are
// allowed; every store implementation checks it before writing a state.
#pragma once

#include <exportengine/time_source.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace exportengine {

enum class export_status : std::uint8_t { queued, processing, available, expired, failed };
enum class export_type : std::uint8_t { contacts, delivery_reports };
enum class compression_kind : std::uint8_t { none, gzip };

/// "queued", "processing", ... — the API's spelling.
[[nodiscard]] std::string_view to_string(export_status s) noexcept;
/// "contacts" or "deliveryReports".
[[nodiscard]] std::string_view to_string(export_type t) noexcept;
/// "none" or "gzip".
[[nodiscard]] std::string_view to_string(compression_kind c) noexcept;
[[nodiscard]] std::optional<export_status> parse_export_status(std::string_view s) noexcept;
[[nodiscard]] std::optional<export_type> parse_export_type(std::string_view s) noexcept;
[[nodiscard]] std::optional<compression_kind> parse_compression(std::string_view s) noexcept;

/// True when contract §2 allows a job to go from `from` to `to`.
[[nodiscard]] bool is_legal_transition(export_status from, export_status to) noexcept;

/// Contacts to export: every contact of the account (both empty), the
/// contacts in any of `list_ids`, or exactly `contact_ids`. At most one of the
/// two is non-empty. IDs are positive; duplicates are harmless.
struct contacts_filter {
    std::vector<std::int64_t> list_ids{};
    std::vector<std::int64_t> contact_ids{};
    friend bool operator==(const contacts_filter&, const contacts_filter&) = default;
};

/// Delivery reports to export: those of `campaign_id`, those submitted in
/// [`start`, `end`), or both conditions at once.
///
/// `start_text` and `end_text` are the range's ends as the caller wrote them
/// (RFC 3339 with any offset, e.g. "2026-01-31T01:00:00+01:00"), kept so
/// that views show them exactly as given; empty when the caller gave only
/// the instant, and views then show the instant in UTC
/// (format_rfc3339_ms). A non-empty text must parse (parse_rfc3339) to
/// exactly its instant. Only the instants decide what is exported and what
/// an idempotency key compares: two texts of one instant are the same
/// export.
struct delivery_reports_filter {
    std::optional<std::int64_t> campaign_id{};
    std::optional<timestamp> start{};
    std::optional<timestamp> end{};
    std::string start_text{};
    std::string end_text{};
    friend bool operator==(const delivery_reports_filter&, const delivery_reports_filter&) = default;
};

/// How the file is written.
struct file_format {
    compression_kind compression = compression_kind::none;
    char delimiter = ',';
    bool bom = false;
    friend bool operator==(const file_format&, const file_format&) = default;
};

/// What a user asked for: kept with the job so a regeneration exports the
/// same scope in the same format. Views show the scope as `filters`
/// (views.hpp), built from `filter`.
struct export_request {
    export_type type = export_type::contacts;
    std::variant<contacts_filter, delivery_reports_filter> filter{};
    file_format format{};
    /// The host's own data about the export (who asked for it, a
    /// correlation id, ...): opaque to the engine, stored with the job, kept
    /// by a regeneration, and shown in views as `metadata` when not empty.
    /// Not part of the scope: it changes nothing in the file. It is part of
    /// what an idempotency key compares (a retry with other metadata is
    /// another request). Keys are non-empty; keys and values are UTF-8, at
    /// most request_limits::max_metadata_bytes together.
    std::map<std::string, std::string> metadata{};
    friend bool operator==(const export_request&, const export_request&) = default;
};

/// Limits applied when validating a request (contract §3, configurable).
struct request_limits {
    std::size_t max_list_ids = 10'000;
    std::size_t max_contact_ids = 100'000;
    /// export_request::metadata: the bytes of its keys and values together.
    std::size_t max_metadata_bytes = 4096;
};

/// Checks a request against contract §3 (types match the filter, IDs positive,
/// arrays non-empty and within limits, one contacts scope at most, a campaign
/// or a whole range, start < end, texts that spell their instants, a known
/// delimiter, metadata within its limit). Returns an empty string when it is
/// valid, else one sentence a person can act on.
[[nodiscard]] std::string validate_request(const export_request& r, const request_limits& limits = {});

/// The part of validate_request that checks export_request::metadata: keys
/// non-empty, keys and values UTF-8, at most `max_bytes` of them together.
/// Empty when it is valid, else one sentence.
[[nodiscard]] std::string validate_metadata(const std::map<std::string, std::string>& metadata,
                                            std::size_t max_bytes);

/// Why a job failed, as the user sees it: a stable code and a sentence. Never
/// internals (SQL, paths, exception text); those go to the log.
struct job_error {
    std::string code{};
    std::string message{};
    friend bool operator==(const job_error&, const job_error&) = default;
};

/// The current holder of a processing job. Writes about the job are fenced:
/// only the holder of the current lease may complete, fail, release or renew
/// it, so a worker that lost its lease can never overwrite a newer attempt.
struct job_lease {
    std::string owner{};
    /// Incremented by every claim of the job; never reused.
    std::int64_t token = 0;
    friend bool operator==(const job_lease&, const job_lease&) = default;
};

/// The stored record of one export.
struct export_job {
    std::string id{};
    std::int64_t account_id = 0;
    export_request request{};
    /// The stored status. What a reader sees is `effective_status(now)`: an
    /// `available` job whose file has expired reads as `expired` before any
    /// sweep has recorded it.
    export_status status = export_status::queued;
    timestamp created_at{};
    timestamp updated_at{};
    std::optional<timestamp> completed_at{};
    /// The file's expiry (set when the job becomes available).
    std::optional<timestamp> expires_at{};
    /// Claims that counted: 1 while the first attempt runs. A lost lease keeps
    /// the count (the attempt was used up); a graceful stop gives it back.
    int attempt = 0;
    /// The lease while processing (owner empty otherwise).
    job_lease lease{};
    std::optional<timestamp> lease_expires_at{};
    /// Rows written so far while processing; the total once available.
    std::optional<std::int64_t> row_count{};
    std::optional<std::int64_t> file_size{};
    /// Hex SHA-256 of the published file.
    std::string checksum{};
    /// The sink's key for the file; empty when there is none (or it was
    /// deleted). Always built by the engine, never from user input.
    std::string file_key{};
    std::optional<job_error> error{};
    /// The job's version: 1 when created, incremented by every change the
    /// store makes to it, in the same transaction. It orders one job's
    /// changes wherever they were made, so observers (the engine's
    /// notifier, webhooks) deliver them in order without a lock held across
    /// the store's I/O.
    std::int64_t version = 0;

    /// contract §2: `available` with now >= expires_at reads as `expired`.
    [[nodiscard]] export_status effective_status(timestamp now) const noexcept;
    /// contract §2: status available and now < expires_at.
    [[nodiscard]] bool is_available_for_download(timestamp now) const noexcept;
};

/// The sink key of the file the claim holding lease token `token` publishes
/// job `job` under: `<id>-<token>.csv`, or `<id>-<token>.csv.gz` when
/// compressed. Built from the job's id and the token only, never from user
/// input. Tokens are never reused, so every attempt has its own key and a
/// stale worker's publish can never replace the current attempt's file. The
/// engine names its files with it, and a job store uses it to name the file a
/// lost or superseded claim may have left (job_store: superseded files).
[[nodiscard]] std::string export_file_key(const export_job& job, std::int64_t token);

/// The file name a download is offered under: `contacts-<id>.csv`,
/// `delivery-reports-<id>.csv`, with `.gz` appended when compressed.
[[nodiscard]] std::string download_filename(const export_job& job);

/// The Content-Type a download is served with: "text/csv; charset=utf-8", or
/// "application/gzip" when compressed.
[[nodiscard]] std::string_view download_content_type(const export_job& job) noexcept;

} // namespace exportengine
