#include "args.hpp"

#include <charconv>
#include <limits>

namespace exportengine::cli {

args::args(const std::vector<std::string>& argv, const std::set<std::string>& flags,
           const std::set<std::string>& options, const std::set<std::string>& repeatable)
{
    for (std::size_t i = 0; i < argv.size(); ++i) {
        const std::string& a = argv[i];
        if (a.rfind("--", 0) != 0)
            throw usage_error("unexpected argument '" + a + "'");
        std::string name = a.substr(2);
        std::optional<std::string> inline_value;
        if (const auto eq = name.find('='); eq != std::string::npos) {
            inline_value = name.substr(eq + 1);
            name.resize(eq);
        }
        if (flags.count(name) != 0) {
            if (inline_value)
                throw usage_error("--" + name + " takes no value");
            if (!flags_.insert(name).second)
                throw usage_error("--" + name + " is given twice");
        } else if (options.count(name) != 0 || repeatable.count(name) != 0) {
            std::string value;
            if (inline_value) {
                value = *inline_value;
            } else {
                if (i + 1 >= argv.size())
                    throw usage_error("--" + name + " needs a value");
                value = argv[++i];
            }
            if (repeatable.count(name) != 0)
                repeated_[name].push_back(value);
            else if (!values_.emplace(name, value).second)
                throw usage_error("--" + name + " is given twice");
        } else {
            throw usage_error("unknown option '--" + name + "'");
        }
    }
}

std::optional<std::string> args::get(const std::string& name) const
{
    const auto it = values_.find(name);
    if (it == values_.end())
        return std::nullopt;
    return it->second;
}

std::string args::get_or(const std::string& name, const std::string& fallback) const
{
    return get(name).value_or(fallback);
}

std::int64_t args::integer_or(const std::string& name, std::int64_t fallback, std::int64_t min,
                              std::int64_t max) const
{
    const auto v = get(name);
    if (!v)
        return fallback;
    std::string digits;
    std::int64_t scale = 1;
    for (std::size_t i = 0; i < v->size(); ++i) {
        const char c = (*v)[i];
        if (c == '_')
            continue;
        if (i + 1 == v->size() && (c == 'k' || c == 'K' || c == 'M' || c == 'G')) {
            scale = c == 'G' ? 1'000'000'000 : c == 'M' ? 1'000'000 : 1'000;
            break;
        }
        digits.push_back(c);
    }
    std::int64_t n = 0;
    const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    const bool overflow = ec == std::errc{} && n != 0
                          && (n > std::numeric_limits<std::int64_t>::max() / scale
                              || n < std::numeric_limits<std::int64_t>::min() / scale);
    if (digits.empty() || ec != std::errc{} || p != digits.data() + digits.size() || overflow)
        throw usage_error("--" + name + " must be an integer, not '" + *v + "'");
    n *= scale;
    if (n < min || n > max)
        throw usage_error("--" + name + " must be between " + std::to_string(min) + " and "
                          + std::to_string(max));
    return n;
}

std::vector<std::string> args::get_all(const std::string& name) const
{
    const auto it = repeated_.find(name);
    return it == repeated_.end() ? std::vector<std::string>{} : it->second;
}

std::chrono::milliseconds args::duration_or(const std::string& name,
                                            std::chrono::milliseconds fallback) const
{
    const auto v = get(name);
    if (!v)
        return fallback;
    const std::string& s = *v;
    std::size_t digits = 0;
    while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9')
        ++digits;
    const std::string unit = s.substr(digits);
    std::int64_t scale = 0;
    if (unit == "ms")
        scale = 1;
    else if (unit == "s")
        scale = 1000;
    else if (unit == "m")
        scale = 60'000;
    else if (unit == "h")
        scale = 3'600'000;
    else if (unit == "d")
        scale = 86'400'000;
    std::int64_t n = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + digits, n);
    if (digits == 0 || scale == 0 || ec != std::errc{} || n <= 0
        || n > std::numeric_limits<std::int64_t>::max() / scale / 1000)
        throw usage_error("--" + name + " must be a positive duration such as 500ms, 90s, 15m, 24h "
                          "or 30d, not '" + s + "'");
    return std::chrono::milliseconds{n * scale};
}

char parse_delimiter(const std::string& s)
{
    if (s == ",")
        return ',';
    if (s == ";")
        return ';';
    if (s == "tab" || s == "\t" || s == "\\t")
        return '\t';
    throw usage_error("--delimiter must be ',', ';' or 'tab', not '" + s + "'");
}

} // namespace exportengine::cli
