// exportengine/adapters/memory_data_source.hpp — a data source held in memory.
//
// For tests and demos: contacts, list memberships and delivery reports in
// vectors, filtered and ordered exactly like the SQLite source (contract §4, §7):
// contacts by id, delivery reports by submitted_at then id. A plan copies the indexes of the matching rows when it is made and shares
// the rows themselves copy-on-write, so its slices read one consistent
// snapshot cheaply.
//
// It can also misbehave on purpose: fail on plan or after N rows with any
// error code (fault injection), and hold every batch at a gate until the test
// opens it (a "slow" source that needs no sleeping).
//
// Thread-safe: rows may be added while exports run.
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

/// A deliberate failure: on plan (on_open) or once `after_rows` rows of the
/// export were read; for the next `times` plans (-1: every plan).
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
    /// Exports planned so far.
    [[nodiscard]] std::size_t opens() const;

    /// Splits exports into slices of `rows` rows (read by up to the lanes
    /// asked for, all on the plan's snapshot); 0, the default: one slice.
    void set_slice_rows(std::size_t rows);

    [[nodiscard]] schema columns(export_type type) const override;
    std::unique_ptr<export_plan> plan(const export_job& job, const plan_options& options,
                                      source_error& err) override;

private:
    class cursor;
    class plan_impl;
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
    std::size_t slice_rows_ = 0;
};

} // namespace exportengine::adapters
