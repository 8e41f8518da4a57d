#include <exportengine/schema.hpp>

#include <array>

namespace exportengine {
namespace {

using enum column_kind;

constexpr std::array contacts_columns{
    column{"id", integer},
    column{"phoneNumber", phone},
    column{"email", free_text},
    column{"firstName", free_text},
    column{"lastName", free_text},
    column{"createdAt", timestamp},
    column{"updatedAt", timestamp},
};

constexpr std::array delivery_report_columns{
    column{"id", integer},
    column{"messageId", identifier},
    column{"campaignId", integer},
    column{"recipient", phone},
    column{"sender", free_text},
    column{"status", identifier},
    column{"errorCode", integer},
    column{"parts", integer},
    column{"submittedAt", timestamp},
    column{"statusAt", timestamp},
};

} // namespace

schema contacts_schema() noexcept { return contacts_columns; }
schema delivery_reports_schema() noexcept { return delivery_report_columns; }

} // namespace exportengine
