// exportengine — the command-line program (contract §8).
#include "args.hpp"
#include "commands.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

namespace {

bool is_help(std::string_view a) { return a == "--help" || a == "-h"; }

} // namespace

int main(int argc, char** argv)
{
    using exportengine::cli::command_usage;
    using exportengine::cli::overview_usage;
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) {
        std::fputs(overview_usage.data(), stderr);
        return 2;
    }
    if (is_help(args[0]) || args[0] == "help") {
        // `exportengine help serve` is `exportengine serve --help`.
        const std::string_view usage = args.size() > 1 ? command_usage(args[1]) : std::string_view{};
        std::fputs(usage.empty() ? overview_usage.data() : usage.data(), stdout);
        return 0;
    }
    if (args[0] == "--version" || args[0] == "version") {
        std::printf("exportengine %s\n", EXPORTENGINE_VERSION);
        return 0;
    }
    const std::string command = args[0];
    args.erase(args.begin());
    // `--help` or `-h` anywhere after a known command: its usage, and nothing
    // else is checked or done.
    if (const std::string_view usage = command_usage(command);
        !usage.empty() && std::any_of(args.begin(), args.end(), is_help)) {
        std::fputs(usage.data(), stdout);
        return 0;
    }
    try {
        if (command == "bench")
            return exportengine::cli::bench_command(args);
        if (command == "seed")
            return exportengine::cli::seed_command(args);
        if (command == "export")
            return exportengine::cli::export_command(args);
        if (command == "serve")
            return exportengine::cli::serve_command(args);
        throw exportengine::cli::usage_error("unknown command '" + command
                                             + "' (try: exportengine --help)");
    } catch (const exportengine::cli::usage_error& e) {
        std::fprintf(stderr, "exportengine %s: %s\n", command.c_str(), e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "exportengine %s: %s\n", command.c_str(), e.what());
        return 1;
    }
}
