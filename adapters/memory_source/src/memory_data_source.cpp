#include <exportengine/adapters/memory_data_source.hpp>

#include <algorithm>
#include <set>
#include <variant>

namespace exportengine::adapters {

class memory_data_source::cursor final : public row_cursor {
public:
    cursor(memory_data_source& src, export_type type,
           std::shared_ptr<const std::vector<memory_contact>> contacts,
           std::shared_ptr<const std::vector<memory_delivery_report>> reports,
           std::vector<std::uint32_t> rows, std::optional<memory_source_fault> fault)
        : src_(src), type_(type), contacts_(std::move(contacts)), reports_(std::move(reports)),
          rows_(std::move(rows)), fault_(std::move(fault))
    {
    }

    std::size_t next_batch(csv_writer& out, std::size_t max_rows, source_error& err) override
    {
        src_.pass_gate();
        const std::size_t total = rows_.size();
        std::size_t n = 0;
        while (n < max_rows && pos_ < total) {
            if (fault_ && !fault_->on_open && pos_ == fault_->after_rows) {
                err = {fault_->code, fault_->detail};
                return n;
            }
            if (type_ == export_type::contacts)
                write(out, (*contacts_)[rows_[pos_]]);
            else
                write(out, (*reports_)[rows_[pos_]]);
            ++pos_;
            ++n;
        }
        if (n == 0 && fault_ && !fault_->on_open && pos_ == fault_->after_rows && pos_ == total)
            err = {fault_->code, fault_->detail};
        return n;
    }

    std::optional<std::int64_t> estimated_rows() const override
    {
        return static_cast<std::int64_t>(rows_.size());
    }

private:
    static void text(csv_writer& out, const std::optional<std::string>& v)
    {
        v ? out.write_text(*v) : out.write_null();
    }
    static void integer(csv_writer& out, const std::optional<std::int64_t>& v)
    {
        v ? out.write_integer(*v) : out.write_null();
    }

    static void write(csv_writer& out, const memory_contact& c)
    {
        out.write_integer(c.id);
        out.write_text(c.phone_number);
        text(out, c.email);
        text(out, c.first_name);
        text(out, c.last_name);
        out.write_timestamp(c.created_at);
        out.write_timestamp(c.updated_at);
        out.end_row();
    }

    static void write(csv_writer& out, const memory_delivery_report& r)
    {
        out.write_integer(r.id);
        out.write_text(r.message_id);
        integer(out, r.campaign_id);
        out.write_text(r.recipient);
        text(out, r.sender);
        out.write_text(r.status);
        integer(out, r.error_code);
        out.write_integer(r.parts);
        out.write_timestamp(r.submitted_at);
        r.status_at ? out.write_timestamp(*r.status_at) : out.write_null();
        out.end_row();
    }

    memory_data_source& src_;
    export_type type_;
    // The snapshot the cursor opened on (never modified: writers copy on
    // write) and the indexes of its rows, in output order.
    std::shared_ptr<const std::vector<memory_contact>> contacts_;
    std::shared_ptr<const std::vector<memory_delivery_report>> reports_;
    std::vector<std::uint32_t> rows_;
    std::optional<memory_source_fault> fault_;
    std::size_t pos_ = 0;
};

void memory_data_source::add_contact(memory_contact c)
{
    std::lock_guard lk(mu_);
    if (contacts_.use_count() > 1) // a cursor reads the current snapshot: copy on write
        contacts_ = std::make_shared<std::vector<memory_contact>>(*contacts_);
    contacts_->push_back(std::move(c));
}

void memory_data_source::add_list_member(std::int64_t list_id, std::int64_t list_account_id,
                                         std::int64_t contact_id)
{
    std::lock_guard lk(mu_);
    members_.push_back({list_id, list_account_id, contact_id});
}

void memory_data_source::add_delivery_report(memory_delivery_report r)
{
    std::lock_guard lk(mu_);
    if (reports_.use_count() > 1)
        reports_ = std::make_shared<std::vector<memory_delivery_report>>(*reports_);
    reports_->push_back(std::move(r));
}

void memory_data_source::set_fault(std::optional<memory_source_fault> f)
{
    std::lock_guard lk(mu_);
    fault_ = std::move(f);
}

void memory_data_source::close_gate()
{
    std::lock_guard lk(mu_);
    gate_open_ = false;
}

void memory_data_source::open_gate()
{
    {
        std::lock_guard lk(mu_);
        gate_open_ = true;
    }
    cv_.notify_all();
}

bool memory_data_source::wait_for_batches(std::size_t n, std::chrono::milliseconds timeout) const
{
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return batches_ >= n; });
}

std::size_t memory_data_source::opens() const
{
    std::lock_guard lk(mu_);
    return opens_;
}

void memory_data_source::pass_gate()
{
    std::unique_lock lk(mu_);
    ++batches_;
    cv_.notify_all();
    cv_.wait(lk, [&] { return gate_open_; });
}

schema memory_data_source::columns(export_type type) const
{
    return type == export_type::contacts ? contacts_schema() : delivery_reports_schema();
}

std::unique_ptr<row_cursor> memory_data_source::open(const export_job& job, source_error& err)
{
    std::lock_guard lk(mu_);
    ++opens_;
    std::optional<memory_source_fault> fault;
    if (fault_ && fault_->times != 0) {
        fault = fault_;
        if (fault_->times > 0)
            --fault_->times;
        if (fault->on_open) {
            err = {fault->code, fault->detail};
            return nullptr;
        }
    }
    const std::int64_t account = job.account_id;
    std::vector<std::uint32_t> rows;
    if (const auto* f = std::get_if<contacts_filter>(&job.request.filter)) {
        std::set<std::int64_t> wanted;
        const bool by_list = !f->list_ids.empty();
        const bool by_id = !f->contact_ids.empty();
        if (by_list) {
            const std::set<std::int64_t> lists(f->list_ids.begin(), f->list_ids.end());
            for (const member& m : members_)
                if (m.list_account_id == account && lists.count(m.list_id))
                    wanted.insert(m.contact_id);
        } else if (by_id) {
            wanted.insert(f->contact_ids.begin(), f->contact_ids.end());
        }
        const auto& all = *contacts_;
        for (std::uint32_t i = 0; i < all.size(); ++i)
            if (all[i].account_id == account && (!(by_list || by_id) || wanted.count(all[i].id)))
                rows.push_back(i);
        std::stable_sort(rows.begin(), rows.end(),
                         [&](std::uint32_t a, std::uint32_t b) { return all[a].id < all[b].id; });
    } else if (const auto* d = std::get_if<delivery_reports_filter>(&job.request.filter)) {
        const auto& all = *reports_;
        for (std::uint32_t i = 0; i < all.size(); ++i) {
            const memory_delivery_report& r = all[i];
            if (r.account_id != account)
                continue;
            if (d->campaign_id && r.campaign_id != d->campaign_id)
                continue;
            // [start, end) on whole seconds, as the data is stored.
            if (d->start && r.submitted_at * 1000 < d->start->time_since_epoch().count())
                continue;
            if (d->end && r.submitted_at * 1000 >= d->end->time_since_epoch().count())
                continue;
            rows.push_back(i);
        }
        std::stable_sort(rows.begin(), rows.end(), [&](std::uint32_t a, std::uint32_t b) {
            return all[a].submitted_at != all[b].submitted_at ? all[a].submitted_at < all[b].submitted_at
                                                              : all[a].id < all[b].id;
        });
    }
    return std::make_unique<cursor>(*this, job.request.type, contacts_, reports_, std::move(rows),
                                    std::move(fault));
}

} // namespace exportengine::adapters
