// The PostgreSQL job store's schema and its migrations. Private.
#pragma once

#include <string>

namespace exportengine::adapters::pg_detail {

class connection;

/// The schema version this build creates and understands.
int latest_schema_version() noexcept;

/// Thrown by migrate() when the database holds a newer schema version.
struct newer_schema {
    int found;
};

/// Creates `schema` if needed and brings it to latest_schema_version(), in
/// one transaction under an advisory lock keyed by the schema's name (so
/// concurrent openers never race). `connection`'s search_path must already
/// name the schema. Throws newer_schema, or pq_error.
void migrate(connection& c, const std::string& schema);

} // namespace exportengine::adapters::pg_detail
