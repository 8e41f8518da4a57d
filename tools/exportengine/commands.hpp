// The `exportengine` subcommands. Each takes the arguments after its name and
// returns the process exit status; a usage_error thrown from one becomes a
// one-line message and exit status 2 in main().
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace exportengine::cli {

int bench_command(const std::vector<std::string>& argv);
int seed_command(const std::vector<std::string>& argv);
int export_command(const std::vector<std::string>& argv);
int serve_command(const std::vector<std::string>& argv);

/// `exportengine --help`: every command in short (usage.cpp).
extern const std::string_view overview_usage;
/// `exportengine <command> --help`: the command's options, or empty for an
/// unknown command.
[[nodiscard]] std::string_view command_usage(std::string_view command);

} // namespace exportengine::cli
