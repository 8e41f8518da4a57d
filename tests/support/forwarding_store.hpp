// A job store forwarding to another, for fault injection in tests.
#pragma once

#include <exportengine/job_store.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace exportengine::test {

/// A job store that forwards every call to another: derive from it to
/// inject a fault into one call (what the real store cannot be made to do
/// on demand) and keep the real store for everything else.
class forwarding_store : public job_store {
public:
    explicit forwarding_store(job_store& inner) : inner_(inner) {}
    [[nodiscard]] bool uses_own_clock() const noexcept override { return inner_.uses_own_clock(); }
    std::unique_ptr<store_watch> watch(std::function<void()> on_work) override
    {
        return inner_.watch(std::move(on_work));
    }
    create_result create(const new_job& j, const std::optional<idempotency_key>& k, boost::system::error_code& ec) override
    {
        return inner_.create(j, k, ec);
    }
    job_page list(std::int64_t a, std::int64_t p, std::int64_t l, boost::system::error_code& ec) override
    {
        return inner_.list(a, p, l, ec);
    }
    std::optional<export_job> get(std::int64_t a, std::string_view id, boost::system::error_code& ec) override
    {
        return inner_.get(a, id, ec);
    }
    std::optional<export_job> find(std::string_view id, boost::system::error_code& ec) override
    {
        return inner_.find(id, ec);
    }
    std::optional<export_job> claim(const std::string& o, timestamp now, timestamp until, int limit,
                                    boost::system::error_code& ec) override
    {
        return inner_.claim(o, now, until, limit, ec);
    }
    bool heartbeat(std::string_view id, const job_lease& l, timestamp now, timestamp until, std::int64_t rows,
                   boost::system::error_code& ec) override
    {
        return inner_.heartbeat(id, l, now, until, rows, ec);
    }
    std::optional<export_job> complete(std::string_view id, const job_lease& l, const completion& c, timestamp now,
                                       boost::system::error_code& ec) override
    {
        return inner_.complete(id, l, c, now, ec);
    }
    complete_result complete_and_claim(const completion_request& r, boost::system::error_code& ec) override
    {
        return inner_.complete_and_claim(r, ec);
    }
    std::optional<export_job> fail(std::string_view id, const job_lease& l, const job_error& e, timestamp now,
                                   boost::system::error_code& ec) override
    {
        return inner_.fail(id, l, e, now, ec);
    }
    std::optional<export_job> release(std::string_view id, const job_lease& l, timestamp now,
                                      boost::system::error_code& ec) override
    {
        return inner_.release(id, l, now, ec);
    }
    requeue_result requeue_expired_leases(timestamp now, int max, const job_error& e,
                                          boost::system::error_code& ec) override
    {
        return inner_.requeue_expired_leases(now, max, e, ec);
    }
    std::vector<export_job> expire_due(timestamp now, std::size_t limit, boost::system::error_code& ec) override
    {
        return inner_.expire_due(now, limit, ec);
    }
    std::vector<file_to_delete> files_to_delete(std::size_t limit, boost::system::error_code& ec) override
    {
        return inner_.files_to_delete(limit, ec);
    }
    void forget_file(std::string_view id, std::string_view key, boost::system::error_code& ec) override
    {
        inner_.forget_file(id, key, ec);
    }
    std::optional<regenerate_result> regenerate(std::int64_t a, std::string_view id, timestamp now,
                                                const std::optional<idempotency_key>& k,
                                                boost::system::error_code& ec) override
    {
        return inner_.regenerate(a, id, now, k, ec);
    }
    std::int64_t prune(timestamp t, boost::system::error_code& ec) override { return inner_.prune(t, ec); }

protected:
    job_store& inner_;
};

} // namespace exportengine::test
