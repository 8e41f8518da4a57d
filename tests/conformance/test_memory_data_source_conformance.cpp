// The data source conformance suite (exportengine::testing) run against the
// memory source, cut into slices and as one slice.
#include <exportengine/adapters/memory_data_source.hpp>
#include <exportengine/testing/data_source_conformance.hpp>

#include <catch2/catch.hpp>

#include <memory>

using namespace exportengine;
using namespace exportengine::testing;

namespace {

source_under_test make_memory(const conformance_data& d, const conformance_options& o)
{
    auto m = std::make_shared<adapters::memory_data_source>();
    auto contact = [](const conformance_contact& c) {
        return adapters::memory_contact{.id = c.id,
                                        .account_id = c.account_id,
                                        .phone_number = c.phone_number,
                                        .email = c.email,
                                        .first_name = c.first_name,
                                        .last_name = c.last_name,
                                        .created_at = c.created_at,
                                        .updated_at = c.updated_at};
    };
    for (const auto& c : d.contacts)
        m->add_contact(contact(c));
    for (const auto& mem : d.members)
        for (const auto& l : d.lists)
            if (l.id == mem.list_id)
                m->add_list_member(l.id, l.account_id, mem.contact_id);
    for (const auto& r : d.reports)
        m->add_delivery_report({.id = r.id,
                                .account_id = r.account_id,
                                .campaign_id = r.campaign_id,
                                .message_id = r.message_id,
                                .recipient = r.recipient,
                                .sender = r.sender,
                                .status = r.status,
                                .error_code = r.error_code,
                                .parts = r.parts,
                                .submitted_at = r.submitted_at,
                                .status_at = r.status_at});
    m->set_slice_rows(o.slice_rows);
    source_under_test s;
    s.add_contact = [m, contact](const conformance_contact& c) { m->add_contact(contact(c)); };
    s.failing = [](errc code) -> std::shared_ptr<data_source> {
        auto bad = std::make_shared<adapters::memory_data_source>();
        bad->set_fault(adapters::memory_source_fault{.code = make_error_code(code), .on_open = true});
        return bad;
    };
    s.source = std::move(m);
    return s;
}

} // namespace

TEST_CASE("data source conformance: memory", "[conformance][memory_source]")
{
    run_data_source_conformance(make_memory);
}

TEST_CASE("data source conformance: memory, one slice per export", "[conformance][memory_source]")
{
    run_data_source_conformance([](const conformance_data& d, const conformance_options&) {
        return make_memory(d, {.slice_rows = 0});
    });
}
