// exportengine/schema.hpp — the columns a data source declares.
//
// A data source says, once, what each column is: its CSV header name and its
// kind. The kind decides how the CSV writer treats every value of the column
// (formula guard or not, how integers and timestamps are formatted), so that
// decision is made once per column and never per value.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace exportengine {

/// What a column holds. Only `free_text` values are ever altered (by the
/// formula-injection guard, contract §4); every other kind is written exactly as
/// given, quoted only when RFC 4180 requires it.
enum class column_kind : std::uint8_t {
    /// A signed 64-bit integer (ids, counts, codes).
    integer,
    /// A UTC instant, written `YYYY-MM-DDTHH:MM:SSZ`.
    timestamp,
    /// Text a person typed or a third party sent (names, email, sender ids):
    /// a value starting with `=`, `+`, `-`, `@`, TAB or CR gets a leading `'`.
    free_text,
    /// An E.164 phone number (`+` then digits). A well-formed number is never
    /// altered. A value that is not one (it would start with `=`, `-`, `@`,
    /// TAB, CR, or `+` followed by anything but digits) is guarded exactly as
    /// free text is, because it is not a phone number but arbitrary text.
    phone,
    /// A system-assigned token (message ids, statuses): never altered.
    identifier,
};

/// One column: its header name and its kind. `name` must outlive the schema's
/// users (string literals in practice).
struct column {
    std::string_view name;
    column_kind kind;
};

/// The columns of an export, in output order.
using schema = std::span<const column>;

/// contract §4 contacts columns:
/// `id,phoneNumber,email,firstName,lastName,createdAt,updatedAt`.
[[nodiscard]] schema contacts_schema() noexcept;

/// contract §4 delivery-report columns:
/// `id,messageId,campaignId,recipient,sender,status,errorCode,parts,submittedAt,statusAt`.
[[nodiscard]] schema delivery_reports_schema() noexcept;

} // namespace exportengine
