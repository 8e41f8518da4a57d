// Deterministic sample rows for `exportengine seed` and `bench` and the
// benchmarks (target exportengine_sample_data, never installed): realistic contacts with the oddities real data
// has — commas, quotes, newlines, non-ASCII names, NULL emails and ~1% of
// free-text values starting with `=`, `+`, `-` or `@`.
//
// The generator keeps its text in fixed arrays and hands out string_views
// into them, so producing a row allocates nothing. A view is valid until the
// next call to next().
#pragma once

#include <exportengine/csv_writer.hpp>

#include <cstdint>
#include <string_view>

namespace exportengine::sample_data {

/// splitmix64: tiny, fast and the same on every platform (the standard
/// library's distributions are not), so a seed means the same rows anywhere.
class prng {
public:
    explicit prng(std::uint64_t seed) noexcept : s_(seed) {}
    std::uint64_t next() noexcept
    {
        std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    /// Uniform in [0, n).
    std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }

private:
    std::uint64_t s_;
};

struct sample_contact {
    std::int64_t id = 0;
    std::string_view phone;
    std::string_view email; // empty with email_null
    bool email_null = false;
    std::string_view first_name;
    std::string_view last_name;
    std::int64_t created_at = 0; // unix seconds
    std::int64_t updated_at = 0;
};

/// Writes one contact as a row of contacts_schema(): inline, so a loop over
/// rows costs what the writer's per-field calls cost.
inline void write_contact(csv_writer& w, const sample_contact& c) noexcept
{
    w.write_integer(c.id);
    w.write_text(c.phone);
    c.email_null ? w.write_null() : w.write_text(c.email);
    w.write_text(c.first_name);
    w.write_text(c.last_name);
    w.write_timestamp(c.created_at);
    w.write_timestamp(c.updated_at);
    w.end_row();
}

/// Contacts with ids 1, 2, 3, ... for one seed.
class contact_generator {
public:
    explicit contact_generator(std::uint64_t seed) noexcept : rng_(seed) {}
    const sample_contact& next() noexcept;

private:
    prng rng_;
    sample_contact row_;
    std::int64_t next_id_ = 1;
    char phone_[24] = {};
    char email_[96] = {};
    char first_[48] = {};
    char last_[48] = {};
};

} // namespace exportengine::sample_data
