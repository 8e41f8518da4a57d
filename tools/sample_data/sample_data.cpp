#include "sample_data.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>

namespace exportengine::sample_data {
namespace {

constexpr std::array<std::string_view, 24> first_names{
    "Anna", "Ben", "Chloé", "David", "Emma", "Felix", "Grace", "Hiroshi",
    "Ines", "Jonas", "Kateřina", "Liam", "Mia", "Noah", "Olivia", "Paul",
    "Łukasz", "Rosa", "Sofia", "Tomás", "Ursula", "Wei", "Zoë", "Søren"};

// Some last names need quoting on purpose: commas, quotes, a line break.
constexpr std::array<std::string_view, 24> last_names{
    "Smith", "Müller", "García", "O'Brien", "Nguyen", "Kowalski", "Rossi",
    "Dubois", "Jensen", "Smith, Jr.", "Tanaka", "Silva", "Novák", "Öztürk",
    "de la Cruz", "Ivanova", "Brown", "\"Ace\" Miller", "Schäfer", "Li",
    "Anne\r\nMarie", "Haddad", "Fernández", "Kim"};

// Free-text values a spreadsheet would run as formulas.
constexpr std::array<std::string_view, 6> formula_values{
    "=HYPERLINK(\"http://x.example\",\"click\")", "+1+1", "-2+3", "@SUM(A1:A9)",
    "=1+2;3", "\tTabbed"};

constexpr std::array<std::string_view, 6> country_prefixes{
    "+49151", "+33612", "+4479", "+1415", "+34612", "+81901"};

constexpr std::array<std::string_view, 5> domains{
    "example.com", "mail.example.org", "corp.example.net", "example.de", "exämple.fr"};

std::size_t copy_to(char* dst, std::size_t cap, std::string_view s) noexcept
{
    const std::size_t n = std::min(cap, s.size());
    std::memcpy(dst, s.data(), n);
    return n;
}

std::size_t put_lower_ascii(char* dst, std::size_t cap, std::string_view s) noexcept
{
    std::size_t n = 0;
    for (const char c : s) {
        if (n == cap)
            break;
        if (c >= 'A' && c <= 'Z')
            dst[n++] = static_cast<char>(c - 'A' + 'a');
        else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            dst[n++] = c;
    }
    return n;
}

} // namespace

const sample_contact& contact_generator::next() noexcept
{
    sample_contact& r = row_;
    r.id = next_id_++;

    // E.164: a country prefix and digits up to 12-13 in all.
    {
        const std::string_view prefix = country_prefixes[rng_.below(country_prefixes.size())];
        std::size_t n = copy_to(phone_, sizeof phone_, prefix);
        std::uint64_t digits = rng_.next();
        while (n < 13) {
            phone_[n++] = static_cast<char>('0' + digits % 10);
            digits /= 10;
        }
        r.phone = {phone_, n};
    }

    const std::uint64_t roll = rng_.below(1000);
    const std::string_view first = first_names[rng_.below(first_names.size())];
    const std::string_view last = last_names[rng_.below(last_names.size())];

    // ~1% of rows carry a formula-looking value in one free-text column.
    if (roll < 4)
        r.first_name = formula_values[rng_.below(formula_values.size())];
    else
        r.first_name = {first_, copy_to(first_, sizeof first_, first)};
    if (roll >= 4 && roll < 8)
        r.last_name = formula_values[rng_.below(formula_values.size())];
    else
        r.last_name = {last_, copy_to(last_, sizeof last_, last)};

    // ~5% have no email (NULL).
    r.email_null = roll >= 950;
    if (r.email_null) {
        r.email = {};
    } else if (roll >= 8 && roll < 10) {
        r.email = formula_values[rng_.below(formula_values.size())];
    } else {
        std::size_t n = put_lower_ascii(email_, 40, first);
        email_[n++] = '.';
        n += put_lower_ascii(email_ + n, 40, last);
        n = static_cast<std::size_t>(
            std::to_chars(email_ + n, email_ + sizeof email_, r.id % 1000).ptr - email_);
        email_[n++] = '@';
        n += copy_to(email_ + n, sizeof email_ - n, domains[rng_.below(domains.size())]);
        r.email = {email_, n};
    }

    // Created over ~3 years before 2026-01-01; updated up to 90 days later.
    constexpr std::int64_t base = 1672531200; // 2023-01-01T00:00:00Z
    r.created_at = base + static_cast<std::int64_t>(rng_.below(3ull * 365 * 86400));
    r.updated_at = r.created_at + static_cast<std::int64_t>(rng_.below(90ull * 86400));
    return r;
}

} // namespace exportengine::sample_data
