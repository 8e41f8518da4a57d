// A small command-line parser for `exportengine`: `--name value` and
// `--flag`, each name at most once. Every problem becomes a usage_error whose
// message is one line naming the argument; main() prints it and exits 2.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace exportengine::cli {

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class args {
public:
    /// `flags` take no value; `options` take one; `repeatable` options take
    /// one each time they are given. Anything else is an error.
    args(const std::vector<std::string>& argv, const std::set<std::string>& flags,
         const std::set<std::string>& options, const std::set<std::string>& repeatable = {});

    [[nodiscard]] bool flag(const std::string& name) const { return flags_.count(name) != 0; }
    [[nodiscard]] std::optional<std::string> get(const std::string& name) const;
    [[nodiscard]] std::string get_or(const std::string& name, const std::string& fallback) const;
    /// An integer in [min, max]; accepts `_` separators and k/M/G suffixes
    /// (10M = 10,000,000).
    [[nodiscard]] std::int64_t integer_or(const std::string& name, std::int64_t fallback,
                                          std::int64_t min, std::int64_t max) const;
    /// Every value of a repeatable option, in the order given.
    [[nodiscard]] std::vector<std::string> get_all(const std::string& name) const;
    /// A duration (contract §8): a positive integer and a unit, `ms`, `s`, `m`,
    /// `h` or `d` (`90s`, `15m`, `24h`, `30d`).
    [[nodiscard]] std::chrono::milliseconds duration_or(const std::string& name,
                                                        std::chrono::milliseconds fallback) const;

private:
    std::set<std::string> flags_;
    std::map<std::string, std::string> values_;
    std::map<std::string, std::vector<std::string>> repeated_;
};

/// The value of --delimiter: `,`, `;` or `tab` (a literal TAB too).
char parse_delimiter(const std::string& value);

} // namespace exportengine::cli
