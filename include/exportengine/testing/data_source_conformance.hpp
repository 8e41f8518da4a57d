// exportengine/testing/data_source_conformance.hpp — the data source contract as a
// Catch2 suite any implementation can run (exportengine::testing).
//
// The suite supplies a data set (contacts, lists, list members, delivery
// reports over three accounts, with NULLs, ties, formula triggers and quoting
// cases); the host's factory loads it into a fresh source of its kind. The
// suite then exports through run_export and checks every byte against its
// own model of contract §3/§4, as SECTIONs:
//
//   - columns match contacts_schema() / delivery_reports_schema();
//   - rows come in the documented order (contacts by id; delivery reports by
//     submitted_at, then id);
//   - a plan's slices are numbered in order, disjoint and covering: read one
//     by one they concatenate to the one-lane export;
//   - every filter exports exactly the right rows (all; listIds with
//     repeats, unknown lists and another account's list; contactIds with
//     repeats, unknown ids and another account's; campaign; a half-open date
//     range cut inside seconds), with 1 and 3 readers;
//   - batch sizes 1 ... large give the same bytes;
//   - a cursor dropped mid-read, a plan dropped unread and a cancelled
//     export are safe, and the next export is whole;
//   - snapshot consistency: a contact committed after plan() is seen by no
//     slice when the plan says it reads one snapshot (single_reader or
//     shared_snapshot); a plan that says `none` is reported and not checked;
//   - errors map to the right errc (those the factory can produce).
//
// Usage (one TEST_CASE per source):
//
//     TEST_CASE("my source conforms") {
//         exportengine::testing::run_data_source_conformance(
//             [](const exportengine::testing::conformance_data& d, const conformance_options& o) {
//                 exportengine::testing::source_under_test s;
//                 s.source = load_my_source(d, o.slice_rows);
//                 s.add_contact = [...](const conformance_contact& c) { ... commit c ... };
//                 s.failing = [...](exportengine::errc e) { return a source that fails with e, or null; };
//                 return s;
//             });
//     }
#pragma once

#include <exportengine/data_source.hpp>
#include <exportengine/error.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace exportengine::testing {

struct conformance_contact {
    std::int64_t id = 0;
    std::int64_t account_id = 0;
    std::string phone_number{};
    std::optional<std::string> email{};
    std::optional<std::string> first_name{};
    std::optional<std::string> last_name{};
    std::int64_t created_at = 0; // unix seconds (a source may store them as contract §4 text)
    std::int64_t updated_at = 0;
};

struct conformance_list {
    std::int64_t id = 0;
    std::int64_t account_id = 0;
};

struct conformance_member {
    std::int64_t list_id = 0;
    std::int64_t contact_id = 0;
};

struct conformance_report {
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

/// The data set the factory loads (campaign ids need no table of their own
/// beyond what the source requires).
struct conformance_data {
    std::vector<conformance_contact> contacts;
    std::vector<conformance_list> lists;
    std::vector<conformance_member> members;
    std::vector<conformance_report> reports;
};

/// What the suite asks of the factory.
struct conformance_options {
    /// Rows per slice the source should cut exports into where it can (small,
    /// so the data set has many slices).
    std::size_t slice_rows = 7;
};

/// A source under test and the hooks the suite needs.
struct source_under_test {
    std::shared_ptr<data_source> source;
    /// Commits one more contact, visible to plans made after it returns. Null:
    /// the snapshot check is skipped (with a warning).
    std::function<void(const conformance_contact&)> add_contact{};
    /// A source that fails every export with `code` (errc::source_busy,
    /// source_io, source_schema, source_corrupt), or null when this kind of
    /// source cannot be made to.
    std::function<std::shared_ptr<data_source>(errc code)> failing{};
};

using data_source_factory = std::function<source_under_test(const conformance_data&, const conformance_options&)>;

/// The suite's data set (what the factory is given).
[[nodiscard]] const conformance_data& conformance_data_set();

/// Runs every check as a Catch2 SECTION; call inside a TEST_CASE. The
/// factory is called once per section, for a fresh source.
void run_data_source_conformance(const data_source_factory& make);

} // namespace exportengine::testing
