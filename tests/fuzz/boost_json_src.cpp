// Boost.JSON compiled from its headers, for the fuzz build only (see the
// top-level CMakeLists.txt): instrumented like our own code, so coverage
// guides the fuzzer through the JSON parser and ASan checks it.
#include <boost/json/src.hpp>
