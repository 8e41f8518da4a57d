// The SQLite job store's schema and its migrations. Private to the adapter.
#pragma once

#include <SQLiteCpp/Database.h>

namespace exportengine::adapters::sqlite_store_detail {

/// The schema version this code writes (PRAGMA user_version).
int latest_schema_version() noexcept;

/// Takes the database from user_version `version` to the latest, inside the
/// caller's write transaction (it does not set user_version).
void migrate_from(SQLite::Database& db, int version);

} // namespace exportengine::adapters::sqlite_store_detail
