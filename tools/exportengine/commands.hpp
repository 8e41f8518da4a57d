// The `exportengine` subcommands. Each takes the arguments after its name and
// returns the process exit status; a usage_error thrown from one becomes a
// one-line message and exit status 2 in main().
#pragma once

#include <string>
#include <vector>

namespace exportengine::cli {

int bench_command(const std::vector<std::string>& argv);
int seed_command(const std::vector<std::string>& argv);
int export_command(const std::vector<std::string>& argv);
int serve_command(const std::vector<std::string>& argv);

} // namespace exportengine::cli
