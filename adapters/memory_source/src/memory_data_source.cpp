#include <exportengine/adapters/memory_data_source.hpp>

#include <algorithm>
#include <set>
#include <variant>

namespace exportengine::adapters {

namespace {

/// The rows a plan reads: the snapshot the plan was made on (never modified:
/// writers copy on write) and the indexes of its rows, in output order.
struct snapshot {
    export_type type;
    std::shared_ptr<const std::vector<memory_contact>> contacts;
    std::shared_ptr<const std::vector<memory_delivery_report>> reports;
    std::vector<std::uint32_t> rows;
    std::optional<memory_source_fault> fault;
};

} // namespace

class memory_data_source::cursor final : public row_cursor {
public:
    cursor(memory_data_source& src, std::shared_ptr<const snapshot> snap, std::size_t begin, std::size_t end)
        : src_(src), snap_(std::move(snap)), pos_(begin), end_(end)
    {
    }

    std::size_t fill(row_batch& out, source_error& err) override
    {
        src_.pass_gate();
        const snapshot& s = *snap_;
        const std::optional<memory_source_fault>& fault = s.fault;
        std::size_t n = 0;
        while (!out.full() && pos_ < end_) {
            if (fault && !fault->on_open && pos_ == fault->after_rows) {
                err = {fault->code, fault->detail};
                return n;
            }
            if (s.type == export_type::contacts)
                put(out, (*s.contacts)[s.rows[pos_]]);
            else
                put(out, (*s.reports)[s.rows[pos_]]);
            ++pos_;
            ++n;
        }
        // A fault placed after the last row fails the export's last slice.
        if (n == 0 && fault && !fault->on_open && pos_ == fault->after_rows && pos_ == s.rows.size())
            err = {fault->code, fault->detail};
        return n;
    }

private:
    static void text(row_batch& out, const std::optional<std::string>& v)
    {
        v ? out.put_text(*v) : out.put_null();
    }
    static void integer(row_batch& out, const std::optional<std::int64_t>& v)
    {
        v ? out.put_integer(*v) : out.put_null();
    }

    static void put(row_batch& out, const memory_contact& c)
    {
        out.put_integer(c.id);
        out.put_text(c.phone_number);
        text(out, c.email);
        text(out, c.first_name);
        text(out, c.last_name);
        out.put_timestamp(c.created_at);
        out.put_timestamp(c.updated_at);
        out.end_row();
    }

    static void put(row_batch& out, const memory_delivery_report& r)
    {
        out.put_integer(r.id);
        out.put_text(r.message_id);
        integer(out, r.campaign_id);
        out.put_text(r.recipient);
        text(out, r.sender);
        out.put_text(r.status);
        integer(out, r.error_code);
        out.put_integer(r.parts);
        out.put_timestamp(r.submitted_at);
        r.status_at ? out.put_timestamp(*r.status_at) : out.put_null();
        out.end_row();
    }

    memory_data_source& src_;
    std::shared_ptr<const snapshot> snap_;
    std::size_t pos_;
    std::size_t end_;
};

/// Slices of `slice_rows` rows of the snapshot (one slice when 0), read by
/// up to `lanes` lanes: every lane reads the same snapshot.
class memory_data_source::plan_impl final : public export_plan {
public:
    plan_impl(memory_data_source& src, std::shared_ptr<const snapshot> snap, std::size_t slice_rows,
              std::size_t max_lanes)
        : src_(src), snap_(std::move(snap)), slice_rows_(slice_rows == 0 ? snap_->rows.size() : slice_rows)
    {
        const std::size_t total = snap_->rows.size();
        const std::size_t slices = slice_rows_ == 0 ? 1 : std::max<std::size_t>((total + slice_rows_ - 1) / slice_rows_, 1);
        lanes_ = slice_rows == 0 ? 1 : std::clamp<std::size_t>(max_lanes, 1, slices);
    }

    std::size_t lanes() const noexcept override { return lanes_; }
    plan_consistency consistency() const noexcept override
    {
        return lanes_ > 1 ? plan_consistency::shared_snapshot : plan_consistency::single_reader;
    }

    bool next_slice(std::size_t, slice& out, source_error&) override
    {
        const std::size_t total = snap_->rows.size();
        if (index_ > 0 && next_ >= total)
            return false; // the first slice is handed out even when empty
        out = slice{};
        out.index = index_++;
        out.partition = static_cast<std::int64_t>(next_);
        next_ = slice_rows_ == 0 ? total : next_ + slice_rows_;
        return true;
    }

    std::unique_ptr<row_cursor> open(std::size_t, const slice& s, source_error&) override
    {
        const std::size_t total = snap_->rows.size();
        const auto begin = std::min(static_cast<std::size_t>(s.partition), total);
        const std::size_t end = slice_rows_ == 0 ? total : std::min(begin + slice_rows_, total);
        return std::make_unique<cursor>(src_, snap_, begin, end);
    }

    std::optional<std::int64_t> estimated_rows() const override
    {
        return static_cast<std::int64_t>(snap_->rows.size());
    }

private:
    memory_data_source& src_;
    std::shared_ptr<const snapshot> snap_;
    std::size_t slice_rows_;
    std::size_t lanes_ = 1;
    std::size_t next_ = 0;
    std::uint64_t index_ = 0;
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

void memory_data_source::set_slice_rows(std::size_t rows)
{
    std::lock_guard lk(mu_);
    slice_rows_ = rows;
}

std::unique_ptr<export_plan> memory_data_source::plan(const export_job& job, const plan_options& options,
                                                      source_error& err)
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
    auto snap = std::make_shared<snapshot>(
        snapshot{job.request.type, contacts_, reports_, std::move(rows), std::move(fault)});
    return std::make_unique<plan_impl>(*this, std::move(snap), slice_rows_, options.max_lanes);
}

} // namespace exportengine::adapters
