// exportengine/views.hpp — contract §3's JSON views of exports, for hosts
// that serve exports under routes of their own.
//
// These are the objects http_api answers with: serialized with
// boost::json::serialize they are its bodies byte for byte. A host that
// calls the engine itself (its own routes, its own authentication, exports
// inside its own responses) builds its answers with them instead of
// rebuilding contract §3's shapes:
//
//     eng.async_create_export(account, std::move(request), std::nullopt,
//         [&](boost::system::error_code ec, exportengine::export_snapshot s) {
//             if (!ec)
//                 reply(202, boost::json::serialize(exportengine::export_view(s.job, s.as_of)));
//         });
//
// Part of the `exportengine::api` target, which links Boost.JSON publicly
// for them.
//
// Decisions (contract §3 leaves them to us; docs/contract.md says the same):
// - `filters` is built from the typed request, whoever made it (http_api or
//   an engine caller), with its keys in one fixed order: `listIds` or
//   `contactIds` (the ids in the order given, duplicates kept),
//   `campaignId`, `startDateTime`, `endDateTime`; each only when given, so
//   `{}` is every contact. A range's ends are shown as written
//   (delivery_reports_filter::start_text / end_text) or, when only the
//   instant was given, as that instant in UTC to the millisecond
//   (`2026-01-31T00:00:00.000Z`, format_rfc3339_ms).
//
// Thread safety: pure functions of their arguments; call them from any
// thread. Errors: they throw only what allocation throws.
#pragma once

#include <exportengine/time_source.hpp>
#include <exportengine/engine.hpp>
#include <exportengine/export_job.hpp>

#include <boost/json/object.hpp>

namespace exportengine {

/// The `filters` object of the export view: the request's scope (see the
/// file comment for its keys and their order).
[[nodiscard]] boost::json::object export_filters_view(const export_request& request);

/// The export view of `job` as read at `as_of`: `exportId`, `type`,
/// `status` (the effective status at `as_of`: an available job past its
/// expiry reads `expired`), `isAvailableForDownload`, `createdAt`,
/// `updatedAt`, `completedAt`, `expiresAt`, `filters`, `compression`,
/// `rowCount`, `fileSize`, `error` (an object only while `failed`), in
/// that order, then `metadata` (export_request::metadata, keys in byte
/// order, every value a string) only when the job has any: a job without
/// metadata has no `metadata` key at all. Give the
/// `as_of` the engine answered with
/// (export_snapshot::as_of, export_list::as_of), not a clock read of your
/// own, so the view agrees with the store's reading.
[[nodiscard]] boost::json::object export_view(const export_job& job, timestamp as_of);

/// The body of GET /exports: `{"exports": [export_view...], "page",
/// "limit", "total"}`, each view as read at `list.as_of`.
[[nodiscard]] boost::json::object export_list_view(const export_list& list);

/// The body of GET /exports/{exportId}: `{"exportId", "url", "expiresAt"
/// (the URL's), "fileExpiresAt", "rowCount", "fileSize", "contentType"}`.
[[nodiscard]] boost::json::object download_link_view(const download_link& link);

} // namespace exportengine
