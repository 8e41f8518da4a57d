// exportengine — the command-line program (contract §8).
#include "args.hpp"
#include "commands.hpp"

#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr std::string_view usage =
    "usage: exportengine <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve --data-dir DIR --source DB --api-key KEY:ACCOUNT [--api-key ...]\n"
    "       [--listen 127.0.0.1:8080] [--retention 24h] [--record-retention 30d] [--url-ttl 15m]\n"
    "       [--workers N] [--public-url URL] [--signing-key FILE] [--previous-signing-key FILE ...]\n"
    "       [--max-body BYTES] [--readers K] [--quiet]\n"
    "       [--lease 30s] [--sweep-interval 15s] [--stale-temp-age 1h]   (crash-recovery timing)\n"
    "      the HTTP API (contract §3) until SIGINT/SIGTERM; prints 'listening on http://HOST:PORT'\n"
    "  seed --db FILE [--accounts N] [--contacts N] [--lists N] [--campaigns N] [--reports N]\n"
    "       [--seed S] [--force]\n"
    "      create a deterministic sample database in the reference schema (contract §7)\n"
    "  export contacts|delivery-reports --source DB --account N --out FILE\n"
    "       [--list-ids 1,2 | --contact-ids 1,2] [--campaign-id N] [--start T --end T]\n"
    "       [--gzip] [--delimiter ,|;|tab] [--bom] [--readers K] [--mmap]\n"
    "       [--data-dir DIR] [--quiet]\n"
    "      one export through the engine, with a progress bar on a terminal and a summary;\n"
    "      --readers K (default 1) reads K slices of the export at once on K connections\n"
    "      (the file is the same bytes); --mmap reads the database through mmap(2)\n"
    "  bench csv [--rows N] [--out FILE] [--gzip] [--gzip-threads N] [--gzip-level L]\n"
    "            [--delimiter ,|;|tab] [--bom] [--seed S] [--json]\n"
    "      write N generated contact rows as CSV (to FILE, or nowhere) and print\n"
    "      rows, bytes, seconds, rows/s, MB/s and peak RSS\n"
    "  bench gzip --in FILE [--out FILE] [--gzip-level L] [--gzip-threads N] [--json]\n"
    "      compress FILE through the gzip stage and print MB/s and the ratio\n"
    "\n"
    "Bad arguments print one line naming the argument and exit with status 2.\n";

} // namespace

int main(int argc, char** argv)
{
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
        std::fputs(usage.data(), args.empty() ? stderr : stdout);
        return args.empty() ? 2 : 0;
    }
    const std::string command = args[0];
    args.erase(args.begin());
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
