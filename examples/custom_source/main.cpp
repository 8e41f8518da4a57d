// A data source of your own: contacts generated from their id (no
// database), split into key ranges so run_export reads them with two lanes.
//
// A source only says what the rows are and how the export splits; run_export
// formats them (CSV rules, formula guard, quoting), runs the lanes in
// parallel, puts their slices back in order, reads ahead and writes behind.
//
//     custom_source [rows] [out.csv]     (defaults: 1000000 rows, a temporary file)
//
// Exits 0 when the file has a header and exactly `rows` rows in id order.
#include <exportengine/byte_sink.hpp>
#include <exportengine/data_source.hpp>
#include <exportengine/run_export.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

namespace ee = exportengine;

namespace {

/// Contacts 1..count of every account, made up from their id.
class generated_contacts final : public ee::data_source {
public:
    explicit generated_contacts(std::int64_t count) : count_(count) {}

    [[nodiscard]] ee::schema columns(ee::export_type type) const override
    {
        return type == ee::export_type::contacts ? ee::contacts_schema() : ee::delivery_reports_schema();
    }

    std::unique_ptr<ee::export_plan> plan(const ee::export_job& job, const ee::plan_options& options,
                                          ee::source_error& err) override
    {
        if (job.request.type != ee::export_type::contacts) {
            // The message users see comes from the code; the detail goes only to the log.
            err = {ee::errc::source_schema, "generated_contacts has no delivery reports"};
            return nullptr;
        }
        return std::make_unique<plan_impl>(count_, options.max_lanes < 2 ? 1 : 2);
    }

private:
    /// Slices of 100,000 ids: [1, 100001), [100001, 200001), ... The data
    /// never changes, so lanes need no common snapshot.
    class plan_impl final : public ee::export_plan {
    public:
        plan_impl(std::int64_t count, std::size_t lanes) : count_(count), lanes_(lanes) {}
        [[nodiscard]] std::size_t lanes() const noexcept override { return lanes_; }
        [[nodiscard]] ee::plan_consistency consistency() const noexcept override
        {
            return lanes_ == 1 ? ee::plan_consistency::single_reader : ee::plan_consistency::none;
        }
        [[nodiscard]] std::optional<std::int64_t> estimated_rows() const override { return count_; }

        bool next_slice(std::size_t, ee::slice& out, ee::source_error&) override
        {
            if (next_low_ > count_)
                return false;
            out.index = index_++;
            out.low = ee::slice_key{.id = next_low_};
            next_low_ += slice_ids;
            out.high = ee::slice_key{.id = next_low_};
            return true;
        }

        std::unique_ptr<ee::row_cursor> open(std::size_t, const ee::slice& s, ee::source_error&) override
        {
            return std::make_unique<cursor>(s.low->id, std::min(s.high->id, count_ + 1));
        }

    private:
        static constexpr std::int64_t slice_ids = 100'000;
        std::int64_t count_;
        std::size_t lanes_;
        std::int64_t next_low_ = 1;
        std::uint64_t index_ = 0;
    };

    /// Fills a batch per call: the put_* calls are inline and allocate
    /// nothing once the batch has warmed up.
    class cursor final : public ee::row_cursor {
    public:
        cursor(std::int64_t low, std::int64_t high) : id_(low), high_(high) {}
        std::size_t fill(ee::row_batch& out, ee::source_error&) override
        {
            std::size_t n = 0;
            char phone[24];
            for (; id_ < high_ && !out.full(); ++id_, ++n) {
                const int len = std::snprintf(phone, sizeof phone, "+4915%09lld", static_cast<long long>(id_));
                out.put_integer(id_);
                out.put_text({phone, static_cast<std::size_t>(len)});
                out.put_text(id_ % 7 == 0 ? "" : "someone@example.com");
                out.put_text(id_ % 100 == 0 ? "=cmd()" : "Anna"); // the formula guard will quote this
                out.put_text("Smith, Jr.");
                out.put_timestamp(1'700'000'000 + id_);
                if (id_ % 3 == 0)
                    out.put_null();
                else
                    out.put_timestamp(1'700'000'000 + 2 * id_);
                out.end_row();
            }
            return n;
        }

    private:
        std::int64_t id_;
        std::int64_t high_;
    };

    std::int64_t count_;
};

} // namespace

int main(int argc, char** argv)
{
    const std::int64_t rows = argc > 1 ? std::atoll(argv[1]) : 1'000'000;
    const std::string path =
        argc > 2 ? argv[2] : "/tmp/exportengine-custom-source-" + std::to_string(::getpid()) + ".csv";

    generated_contacts source(rows);
    ee::export_job job; // what the engine would hand over: account, type, filter, format
    job.account_id = 1;
    job.request.type = ee::export_type::contacts;

    boost::system::error_code ec;
    ee::file_byte_sink file(path, ec);
    if (ec) {
        std::fprintf(stderr, "custom_source: cannot create %s: %s\n", path.c_str(), ec.message().c_str());
        return 1;
    }
    const auto result = ee::run_export(job, source, file, {.readers = 2});
    file.close(ec);
    if (result.ec || ec) {
        std::fprintf(stderr, "custom_source: export failed: %s %s\n", result.ec.message().c_str(),
                     result.detail.c_str());
        return 1;
    }

    // Check what was written: the header, then ids 1..rows in order.
    std::ifstream in(path, std::ios::binary);
    std::string line;
    std::getline(in, line);
    bool ok = line == "id,phoneNumber,email,firstName,lastName,createdAt,updatedAt\r";
    std::int64_t expect = 1;
    while (ok && std::getline(in, line))
        ok = std::atoll(line.c_str()) == expect++;
    ok = ok && expect == rows + 1 && result.rows == rows;
    std::printf("custom_source: %lld rows to %s, %s\n", static_cast<long long>(result.rows), path.c_str(),
                ok ? "in order" : "WRONG");
    if (argc <= 2)
        std::remove(path.c_str());
    return ok ? 0 : 1;
}
