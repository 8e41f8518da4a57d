#include <exportengine/testing/data_source_conformance.hpp>

#include <exportengine/byte_sink.hpp>
#include <exportengine/csv_writer.hpp>
#include <exportengine/run_export.hpp>
#include <exportengine/schema.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <vector>

namespace exportengine::testing {

namespace {

// 2024-01-01T10:00:00Z
constexpr std::int64_t t0 = 1704103200;

conformance_data make_data()
{
    conformance_data d;
    // Account 1: ids with gaps, NULLs, a formula trigger, quoting cases.
    for (std::int64_t i = 0; i < 60; ++i) {
        conformance_contact c;
        c.id = 3 + i * 2 + (i % 5 == 0 ? 1 : 0) * 100'000; // out-of-order insert ids for some
        c.account_id = 1;
        c.phone_number = "+49151" + std::to_string(1000000 + i);
        if (i % 3 != 0)
            c.email = "user" + std::to_string(i) + "@example.com";
        if (i % 4 != 1)
            c.first_name = i == 7 ? std::string("=HYPERLINK(\"x\")") : "First" + std::to_string(i);
        if (i % 6 != 2)
            c.last_name = i == 8 ? std::string("O'Brien, \"Jr\"") : (i == 9 ? std::string("line\nbreak") : "Last");
        c.created_at = t0 + i * 37;
        c.updated_at = t0 + i * 41 + 5;
        d.contacts.push_back(c);
    }
    // Account 2 and 3 (never in account 1's exports); interleaved ids.
    for (std::int64_t i = 0; i < 10; ++i) {
        d.contacts.push_back({.id = 4 + i * 2, .account_id = 2, .phone_number = "+1555" + std::to_string(i),
                              .created_at = t0, .updated_at = t0});
        d.contacts.push_back({.id = 500 + i, .account_id = 3, .phone_number = "-malformed" + std::to_string(i),
                              .first_name = "@three", .created_at = t0 - 86400, .updated_at = t0});
    }
    d.lists = {{10, 1}, {11, 1}, {12, 1}, {20, 2}};
    for (std::size_t i = 0; i < d.contacts.size(); ++i) {
        const auto& c = d.contacts[i];
        if (c.account_id == 1 && i % 2 == 0)
            d.members.push_back({10, c.id});
        if (c.account_id == 1 && i % 3 == 0)
            d.members.push_back({11, c.id});
        if (c.account_id == 2)
            d.members.push_back({20, c.id});
    }
    d.members.push_back({10, 4}); // list of account 1 naming account 2's contact: never exported
    // Reports: account 1 over campaigns 100, 101 and none; ties on seconds.
    for (std::int64_t i = 0; i < 80; ++i) {
        conformance_report r;
        r.id = 1000 + (i * 37) % 97; // ids not in time order
        r.account_id = 1;
        if (i % 3 != 2)
            r.campaign_id = 100 + i % 3;
        r.message_id = "msg-" + std::to_string(i);
        r.recipient = "+4917" + std::to_string(2000000 + i);
        if (i % 5 != 0)
            r.sender = i == 3 ? std::string("+sender") : "Shop";
        r.status = i % 4 == 0 ? "FAILED" : "DELIVERED";
        if (i % 4 == 0)
            r.error_code = 30000 + i;
        r.parts = 1 + i % 3;
        r.submitted_at = t0 + (i / 2) * 10; // pairs share a second
        if (i % 7 != 0)
            r.status_at = r.submitted_at + 3;
        d.reports.push_back(r);
    }
    for (std::int64_t i = 0; i < 5; ++i)
        d.reports.push_back({.id = 5000 + i, .account_id = 2, .campaign_id = 100, .message_id = "other",
                             .recipient = "+1", .status = "DELIVERED", .submitted_at = t0 + i});
    return d;
}

// -- the suite's model of contract §3/§4 -----------------------------------------

export_job job_for(std::int64_t account, export_request r)
{
    export_job j;
    j.id = "conformance";
    j.account_id = account;
    j.request = std::move(r);
    return j;
}

export_request contacts(contacts_filter f = {})
{
    export_request r;
    r.type = export_type::contacts;
    r.filter = std::move(f);
    return r;
}

export_request reports(delivery_reports_filter f = {})
{
    export_request r;
    r.type = export_type::delivery_reports;
    r.filter = f;
    return r;
}

/// The file contract §4 says `job` must produce from `d`.
std::string expected_csv(const conformance_data& d, const export_job& job)
{
    string_byte_sink sink;
    const bool is_contacts = job.request.type == export_type::contacts;
    csv_writer w(is_contacts ? contacts_schema() : delivery_reports_schema(), sink,
                 {.delimiter = job.request.format.delimiter, .bom = job.request.format.bom});
    w.write_header();
    auto text = [&](const std::optional<std::string>& v) { v ? w.write_text(*v) : w.write_null(); };
    auto integer = [&](const std::optional<std::int64_t>& v) { v ? w.write_integer(*v) : w.write_null(); };
    if (is_contacts) {
        const auto& f = std::get<contacts_filter>(job.request.filter);
        std::set<std::int64_t> wanted;
        if (!f.list_ids.empty()) {
            const std::set<std::int64_t> lists(f.list_ids.begin(), f.list_ids.end());
            for (const auto& m : d.members)
                for (const auto& l : d.lists)
                    if (l.id == m.list_id && l.account_id == job.account_id && lists.count(l.id))
                        wanted.insert(m.contact_id);
        } else {
            wanted.insert(f.contact_ids.begin(), f.contact_ids.end());
        }
        const bool all = f.list_ids.empty() && f.contact_ids.empty();
        std::vector<conformance_contact> rows;
        for (const auto& c : d.contacts)
            if (c.account_id == job.account_id && (all || wanted.count(c.id)))
                rows.push_back(c);
        std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
        for (const auto& c : rows) {
            w.write_integer(c.id);
            w.write_text(c.phone_number);
            text(c.email);
            text(c.first_name);
            text(c.last_name);
            w.write_timestamp(c.created_at);
            w.write_timestamp(c.updated_at);
            w.end_row();
        }
    } else {
        const auto& f = std::get<delivery_reports_filter>(job.request.filter);
        std::vector<conformance_report> rows;
        for (const auto& r : d.reports) {
            if (r.account_id != job.account_id || (f.campaign_id && r.campaign_id != f.campaign_id))
                continue;
            if (f.start && r.submitted_at * 1000 < f.start->time_since_epoch().count())
                continue;
            if (f.end && r.submitted_at * 1000 >= f.end->time_since_epoch().count())
                continue;
            rows.push_back(r);
        }
        std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
            return a.submitted_at != b.submitted_at ? a.submitted_at < b.submitted_at : a.id < b.id;
        });
        for (const auto& r : rows) {
            w.write_integer(r.id);
            w.write_text(r.message_id);
            integer(r.campaign_id);
            w.write_text(r.recipient);
            text(r.sender);
            w.write_text(r.status);
            integer(r.error_code);
            w.write_integer(r.parts);
            w.write_timestamp(r.submitted_at);
            r.status_at ? w.write_timestamp(*r.status_at) : w.write_null();
            w.end_row();
        }
    }
    boost::system::error_code ec;
    w.finish(ec);
    REQUIRE_FALSE(ec);
    return sink.str();
}

struct exported {
    std::string csv;
    run_export_result result;
};

exported export_csv(data_source& src, const export_job& job, std::size_t readers = 1, std::size_t batch = 64)
{
    exported e;
    string_byte_sink sink;
    e.result = run_export(job, src, sink, {.readers = readers, .batch_rows = batch, .write_behind = false});
    e.csv = sink.str();
    return e;
}

void check_export(data_source& src, const conformance_data& d, const export_job& job, std::size_t readers = 1,
                  std::size_t batch = 64)
{
    const auto got = export_csv(src, job, readers, batch);
    INFO(got.result.detail);
    REQUIRE_FALSE(got.result.ec);
    CHECK_FALSE(got.result.cancelled);
    CHECK(got.csv == expected_csv(d, job));
}

/// Reads every slice of `plan` in order (slice k on lane k % lanes, one
/// cursor open at a time) into one CSV body each.
std::vector<std::string> read_slices(export_plan& plan, schema columns, std::size_t batch, source_error& err)
{
    std::vector<std::string> bodies;
    row_batch b(columns.size(), batch);
    for (std::size_t k = 0;; ++k) {
        const std::size_t lane = k % plan.lanes();
        slice s;
        if (!plan.next_slice(lane, s, err))
            break;
        CHECK(s.index == k);
        auto cur = plan.open(lane, s, err);
        if (!cur)
            break;
        string_byte_sink sink;
        csv_writer w(columns, sink);
        for (;;) {
            b.clear();
            const std::size_t n = cur->fill(b, err);
            CHECK(b.rows() == n);
            format_rows(w, b);
            if (n == 0 || err)
                break;
        }
        boost::system::error_code ec;
        w.finish(ec);
        bodies.push_back(sink.str());
        if (err)
            break;
    }
    return bodies;
}

std::string header_of(const std::string& csv)
{
    return csv.substr(0, csv.find("\r\n") + 2);
}

} // namespace

const conformance_data& conformance_data_set()
{
    static const conformance_data d = make_data();
    return d;
}

void run_data_source_conformance(const data_source_factory& make)
{
    const conformance_data& d = conformance_data_set();
    const conformance_options options{};
    using namespace std::chrono;
    const auto at = [](std::int64_t unix_ms) { return timestamp{milliseconds{unix_ms}}; };

    SECTION("columns match the schema")
    {
        auto s = make(d, options);
        REQUIRE(s.source);
        for (auto [type, want] : {std::pair{export_type::contacts, contacts_schema()},
                                  std::pair{export_type::delivery_reports, delivery_reports_schema()}}) {
            const schema got = s.source->columns(type);
            REQUIRE(got.size() == want.size());
            for (std::size_t i = 0; i < got.size(); ++i) {
                CHECK(got[i].name == want[i].name);
                CHECK(got[i].kind == want[i].kind);
            }
        }
    }
    SECTION("rows come in the documented order")
    {
        auto s = make(d, options);
        check_export(*s.source, d, job_for(1, contacts()));
        check_export(*s.source, d, job_for(1, reports()));
        check_export(*s.source, d, job_for(2, contacts()));
        check_export(*s.source, d, job_for(3, contacts()));
        check_export(*s.source, d, job_for(9, contacts())); // no rows: header only
    }
    SECTION("slices are in order, disjoint and covering")
    {
        auto s = make(d, options);
        for (const export_job& job : {job_for(1, contacts()), job_for(1, reports()),
                                      job_for(1, reports({.campaign_id = 100})),
                                      job_for(1, contacts({.list_ids = {10, 11}}))}) {
            const std::string want = expected_csv(d, job);
            const std::string header = header_of(want);
            for (std::size_t lanes : {1, 3}) {
                INFO(lanes << " lanes");
                source_error err;
                auto plan = s.source->plan(job, {.max_lanes = lanes}, err);
                INFO(err.detail);
                REQUIRE(plan);
                CHECK(plan->lanes() >= 1);
                CHECK(plan->lanes() <= lanes);
                const auto bodies = read_slices(*plan, s.source->columns(job.request.type), 5, err);
                REQUIRE_FALSE(err);
                REQUIRE_FALSE(bodies.empty());
                std::string all = header;
                std::set<std::string> seen;
                for (const auto& body : bodies) {
                    all += body;
                    // Disjoint: no row in two slices.
                    for (std::size_t p = 0; p < body.size();) {
                        const std::size_t e = body.find("\r\n", p);
                        REQUIRE(e != std::string::npos);
                        CHECK(seen.insert(body.substr(p, e - p)).second);
                        p = e + 2;
                    }
                }
                CHECK(all == want); // covering, in order
            }
        }
    }
    SECTION("every filter exports exactly its rows")
    {
        auto s = make(d, options);
        const std::vector<export_job> jobs{
            job_for(1, contacts()),
            // Repeats, an unknown list, another account's list.
            job_for(1, contacts({.list_ids = {10, 10, 999, 20}})),
            job_for(1, contacts({.list_ids = {11}})),
            job_for(1, contacts({.list_ids = {12}})), // an empty list
            job_for(2, contacts({.list_ids = {20}})),
            job_for(2, contacts({.list_ids = {10}})), // account 1's list: nothing
            // Repeats, unknown ids, another account's ids.
            job_for(1, contacts({.contact_ids = {5, 3, 3, 4, 500, 777'777, 100'003}})),
            job_for(1, contacts({.contact_ids = {4, 6}})),
            job_for(1, reports({.campaign_id = 100})),
            job_for(1, reports({.campaign_id = 101})),
            job_for(1, reports({.campaign_id = 555})),
            // Half-open, cut inside seconds, ties on a second at the edges.
            job_for(1, reports({.start = at((t0 + 50) * 1000), .end = at((t0 + 150) * 1000)})),
            job_for(1, reports({.start = at((t0 + 50) * 1000 + 1), .end = at((t0 + 150) * 1000 + 1)})),
            job_for(1, reports({.start = at((t0 + 49) * 1000 + 999), .end = at((t0 + 50) * 1000)})),
            job_for(1, reports({.campaign_id = 101, .start = at(t0 * 1000), .end = at((t0 + 300) * 1000)})),
            job_for(1, reports({.start = at((t0 + 100) * 1000)})),
            job_for(1, reports({.end = at((t0 + 100) * 1000)})),
            job_for(1, reports({.start = at((t0 - 3600) * 1000), .end = at((t0 - 60) * 1000)})),
        };
        for (std::size_t i = 0; i < jobs.size(); ++i) {
            for (std::size_t readers : {1, 3}) {
                INFO("job " << i << ", " << readers << " readers");
                check_export(*s.source, d, jobs[i], readers);
            }
        }
        // Format options reach every row.
        export_job semi = job_for(1, contacts());
        semi.request.format.delimiter = ';';
        semi.request.format.bom = true;
        check_export(*s.source, d, semi, 3);
    }
    SECTION("batch sizes do not change the rows")
    {
        auto s = make(d, options);
        for (std::size_t batch : {1, 2, 7, 64, 100'000})
            for (std::size_t readers : {1, 2}) {
                INFO("batches of " << batch << ", " << readers << " readers");
                check_export(*s.source, d, job_for(1, contacts()), readers, batch);
                check_export(*s.source, d, job_for(1, reports()), readers, batch);
            }
    }
    SECTION("a cursor dropped mid-read, a plan dropped unread and a cancelled export are safe")
    {
        auto s = make(d, options);
        const export_job job = job_for(1, contacts());
        for (std::size_t lanes : {1, 3}) {
            source_error err;
            auto plan = s.source->plan(job, {.max_lanes = lanes}, err);
            REQUIRE(plan);
            slice sl;
            REQUIRE(plan->next_slice(0, sl, err));
            auto cur = plan->open(0, sl, err);
            REQUIRE(cur);
            row_batch b(s.source->columns(job.request.type).size(), 1);
            CHECK(cur->fill(b, err) == 1);
            cur.reset();
            plan.reset();
            plan = s.source->plan(job, {.max_lanes = lanes}, err);
            REQUIRE(plan);
            plan.reset();
            // Cancelled before the first batch.
            std::atomic<bool> stop{true};
            string_byte_sink sink;
            const auto r = run_export(job, *s.source, sink, {.readers = lanes, .batch_rows = 2, .write_behind = false},
                                      {.stop = &stop});
            CHECK(r.cancelled);
        }
        check_export(*s.source, d, job, 3);
    }
    SECTION("a write committed after the plan is not half-seen")
    {
        auto s = make(d, options);
        if (!s.add_contact) {
            WARN("the factory cannot commit writes: snapshot consistency not checked");
            return;
        }
        const export_job job = job_for(1, contacts());
        const std::string before = expected_csv(d, job);
        source_error err;
        auto plan = s.source->plan(job, {.max_lanes = 3}, err);
        INFO(err.detail);
        REQUIRE(plan);
        if (plan->consistency() == plan_consistency::none) {
            WARN("the plan reads no common snapshot: not checked");
            return;
        }
        // One contact before every other id, one after, one in the middle.
        s.add_contact({.id = 1, .account_id = 1, .phone_number = "+1", .created_at = t0, .updated_at = t0});
        s.add_contact({.id = 60, .account_id = 1, .phone_number = "+2", .created_at = t0, .updated_at = t0});
        s.add_contact({.id = 900'000, .account_id = 1, .phone_number = "+3", .created_at = t0, .updated_at = t0});
        const auto bodies = read_slices(*plan, s.source->columns(job.request.type), 4, err);
        REQUIRE_FALSE(err);
        std::string all = header_of(before);
        for (const auto& b : bodies)
            all += b;
        CHECK(all == before);
        plan.reset();
        // A plan made after the writes sees them all.
        conformance_data after = d;
        after.contacts.push_back({.id = 1, .account_id = 1, .phone_number = "+1", .created_at = t0, .updated_at = t0});
        after.contacts.push_back({.id = 60, .account_id = 1, .phone_number = "+2", .created_at = t0, .updated_at = t0});
        after.contacts.push_back(
            {.id = 900'000, .account_id = 1, .phone_number = "+3", .created_at = t0, .updated_at = t0});
        check_export(*s.source, after, job, 3);
    }
    SECTION("errors map to the source codes")
    {
        auto s = make(d, options);
        if (!s.failing) {
            WARN("the factory cannot make failing sources: error mapping not checked");
            return;
        }
        for (errc code : {errc::source_busy, errc::source_io, errc::source_schema, errc::source_corrupt}) {
            auto bad = s.failing(code);
            if (!bad)
                continue;
            for (std::size_t readers : {1, 3}) {
                INFO("errc " << static_cast<int>(code) << ", " << readers << " readers");
                const auto got = export_csv(*bad, job_for(1, contacts()), readers);
                CHECK(got.result.ec == make_error_code(code));
                CHECK(is_transient(got.result.ec) == (code == errc::source_busy || code == errc::source_io));
                CHECK_FALSE(got.result.cancelled);
            }
        }
    }
}

} // namespace exportengine::testing
