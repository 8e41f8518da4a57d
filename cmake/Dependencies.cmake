# Every third-party dependency is found here, once, by its imported target.
# scripts/setup.sh installs the Debian packages that provide them.
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(Boost 1.81 REQUIRED CONFIG COMPONENTS json)
# libdeflate compresses the gzip stage's members (faster than zlib at the
# same levels); zlib is what the tests read them back with.
find_package(PkgConfig REQUIRED)
# Under a prefix of our own: pkg_check_modules caches its results by prefix.
pkg_check_modules(exportengine_libdeflate REQUIRED IMPORTED_TARGET libdeflate)
find_package(ZLIB REQUIRED)
# libcrypto (SHA-256, HMAC, RAND_bytes).
find_package(OpenSSL 3 REQUIRED)
# SQLiteCpp's config also finds SQLite3 (SQLite::SQLite3).
find_package(SQLiteCpp 3.2 REQUIRED CONFIG)
# libpq, for the PostgreSQL job store (optional: without it that adapter and
# its tests are not built). CMake's FindPostgreSQL gives PostgreSQL::PostgreSQL.
find_package(PostgreSQL 15 QUIET)
if(NOT PostgreSQL_FOUND)
  message(STATUS "libpq not found (libpq-dev): the PostgreSQL job store is not built")
endif()
