// exportengine/adapters/memory_data_source.hpp — a data source held in memory.
//
// For tests and demos: contacts, list memberships and delivery reports in
// vectors, filtered and ordered exactly like the SQLite source (SPEC §4, §7):
// contacts by id, delivery reports by submitted_at then id. A cursor copies
// the indexes of the matching rows when it opens and shares the rows
// themselves copy-on-write, so it reads one consistent snapshot cheaply.
//
// It can also misbehave on purpose: fail on open or after N rows with any
// error code (fault injection), and hold every batch at a gate until the test
// opens it (a "slow" source that needs no sleeping).
//
// Thread-safe: rows may be added while cursors run.
#pragma once

#include <exportengine/data_source.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace exportengine::adapters {

struct memory_contact {
    std::int64_t id = 0;
    std::int64_t account_id = 0;
    std::string phone_number{};
    std::optional<std::string> email{};
    std::optional<std::string> first_name{};
    std::optional<std::string> last_name{};
    std::int64_t created_at = 0; // unix seconds
    std::int64_t updated_at = 0;
};

struct memory_delivery_report {
    std::int64_t id = 0;
    std::int64_t account_id = 0;
    std::optional<std::int64_t> campaign_id{};
    std::string message_id{};
    std::string recipient{};
    std::optional<std::string> sender{};
    std::string status{};
    std::optional<std::int64_t> error_code{};
    std::int64_t parts = 1;
    std::int64_t submitted_at = 0; // unix seconds
    std::optional<std::int64_t> status_at{};
};

/// A deliberate failure: on open (after_rows == 0 and on_open) or once
/// `after_rows` rows of a cursor were written; for the next `times` cursors
/// (-1: every cursor).
struct memory_source_fault {
    boost::system::error_code code{};
    std::string detail = "injected fault";
    bool on_open = false;
    std::size_t after_rows = 0;
    int times = -1;
};

class memory_data_source final : public data_source {
public:
    memory_data_source() = default;

    void add_contact(memory_contact c);
    void add_list_member(std::int64_t list_id, std::int64_t list_account_id, std::int64_t contact_id);
    void add_delivery_report(memory_delivery_report r);

    /// Replaces any earlier fault; `std::nullopt` clears it.
    void set_fault(std::optional<memory_source_fault> f);

    /// Closes the gate: every batch waits until open_gate(). Open it again
    /// before tearing down: a batch waiting at the gate holds its thread.
    void close_gate();
    void open_gate();
    /// Blocks until at least `n` batches have reached the gate (open or
    /// closed), or `timeout` passes. Returns whether they did.
    bool wait_for_batches(std::size_t n, std::chrono::milliseconds timeout) const;
    /// Cursors opened so far.
    [[nodiscard]] std::size_t opens() const;

    [[nodiscard]] schema columns(export_type type) const override;
    std::unique_ptr<row_cursor> open(const export_job& job, source_error& err) override;

private:
    class cursor;
    friend class cursor;
    void pass_gate();

    mutable std::mutex mu_;
    mutable std::condition_variable cv_;
    std::shared_ptr<std::vector<memory_contact>> contacts_ =
        std::make_shared<std::vector<memory_contact>>();
    struct member {
        std::int64_t list_id, list_account_id, contact_id;
    };
    std::vector<member> members_{};
    std::shared_ptr<std::vector<memory_delivery_report>> reports_ =
        std::make_shared<std::vector<memory_delivery_report>>();
    std::optional<memory_source_fault> fault_{};
    bool gate_open_ = true;
    std::size_t batches_ = 0;
    std::size_t opens_ = 0;
};

} // namespace exportengine::adapters
