#include "statements.hpp"

#include "job_codec.hpp"

namespace exportengine::adapters::sqlite_store_detail {

// ---------------------------------------------------------------------------
// The SQL. Each text is prepared once per connection (keyed by its address).

namespace sql {
const char* const begin_immediate = "BEGIN IMMEDIATE";
const char* const savepoint_write = "SAVEPOINT one_write";
const char* const release_write = "RELEASE one_write";
const char* const rollback_write = "ROLLBACK TO one_write";
const char* const savepoint_claim = "SAVEPOINT claim_next";
const char* const release_claim = "RELEASE claim_next";
const char* const rollback_claim = "ROLLBACK TO claim_next";
const char* const sync_normal = "PRAGMA synchronous = NORMAL";
const char* const sync_full = "PRAGMA synchronous = FULL";
const char* const begin_read = "BEGIN DEFERRED";
const char* const commit = "COMMIT";

const char* const job_by_id = "SELECT " EE_JOB_COLUMNS " FROM jobs WHERE id = ?1";

const char* const insert_job =
    "INSERT INTO jobs (id, account_id, type, filter_json, compression, delimiter, bom, "
    "metadata_json, status, created_at, updated_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?9)";
const char* const find_key =
    "SELECT request_hash, job_id, created_at FROM idempotency_keys "
    "WHERE account_id = ?1 AND \"key\" = ?2";
const char* const put_key =
    "INSERT OR REPLACE INTO idempotency_keys (account_id, \"key\", request_hash, job_id, created_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5)";

const char* const count_account =
    "SELECT IFNULL((SELECT total FROM account_queue WHERE account_id = ?1), 0)";
const char* const page_account = "SELECT " EE_JOB_COLUMNS " FROM jobs WHERE account_id = ?1 "
                                 "ORDER BY created_at DESC, id DESC LIMIT ?2 OFFSET ?3";

// Claiming picks the account first, then its oldest queued job: two index
// seeks, whatever the length of the queue. Among accounts with queued jobs
// and fewer than ?1 running: the fewest running, then the one served least
// recently (so a long queue of one account takes turns with everyone
// else's). account_queue's counts are kept by triggers (see the schema).
const char* const pick_account =
    "SELECT account_id FROM account_queue INDEXED BY account_queue_ready "
    "WHERE queued > 0 AND running < ?1 ORDER BY running, last_claim, account_id LIMIT 1";
const char* const pick_job =
    "SELECT id FROM jobs WHERE status = 'queued' AND account_id = ?1 "
    "ORDER BY created_at, id LIMIT 1";
const char* const take_turn =
    "UPDATE account_queue SET last_claim = MAX(1, (SELECT MAX(last_claim) FROM account_queue) + 1) "
    "WHERE account_id = ?1";
const char* const claim_job =
    "UPDATE jobs SET status = 'processing', attempt = attempt + 1, lease_owner = ?2, "
    "lease_token = lease_token + 1, lease_expires_at = ?3, updated_at = ?4, row_count = 0, "
    "error_code = NULL, error_message = NULL, version = version + 1 "
    "WHERE id = ?1 AND status = 'queued'";

// The fenced writes: ?1 id, ?2 lease owner, ?3 lease token, ?4 now.
#define EE_FENCE " WHERE id = ?1 AND status = 'processing' AND lease_owner = ?2 AND lease_token = ?3"
const char* const heartbeat =
    "UPDATE jobs SET lease_expires_at = ?5, row_count = ?6, updated_at = ?4" EE_FENCE;
const char* const complete =
    "UPDATE jobs SET status = 'available', row_count = ?5, file_size = ?6, checksum = ?7, "
    "file_key = ?8, completed_at = ?9, expires_at = ?10, lease_owner = '', "
    "lease_expires_at = NULL, error_code = NULL, error_message = NULL, updated_at = ?4, "
    "version = version + 1" EE_FENCE;
const char* const fail =
    "UPDATE jobs SET status = 'failed', error_code = ?5, error_message = ?6, row_count = NULL, "
    "lease_owner = '', lease_expires_at = NULL, updated_at = ?4, version = version + 1" EE_FENCE;
// ?5: 1 gives the attempt back (a graceful stop), 0 keeps it (a lost lease).
const char* const requeue =
    "UPDATE jobs SET status = 'queued', attempt = attempt - ?5, row_count = NULL, "
    "lease_owner = '', lease_expires_at = NULL, updated_at = ?4, version = version + 1" EE_FENCE;
#undef EE_FENCE

const char* const expired_leases =
    "SELECT id, attempt, lease_owner, lease_token FROM jobs "
    "WHERE status = 'processing' AND lease_expires_at < ?1 ORDER BY lease_expires_at, id";

// (An available job always has an expiry: the schema checks it.)
const char* const due_to_expire =
    "SELECT " EE_JOB_COLUMNS " FROM jobs WHERE status = 'available' AND expires_at <= ?1 "
    "ORDER BY expires_at, id LIMIT ?2";
const char* const expire_job =
    "UPDATE jobs SET status = 'expired', updated_at = ?2, version = version + 1 "
    "WHERE id = ?1 AND status = 'available'";

const char* const files_to_delete =
    "SELECT id, file_key FROM jobs "
    "WHERE status IN ('expired', 'failed') AND file_key <> '' "
    "UNION ALL "
    "SELECT job_id, stale_key FROM stale_files "
    "LIMIT ?1";
const char* const clear_live_file =
    "UPDATE jobs SET file_key = '', version = version + 1 "
    "WHERE id = ?1 AND file_key = ?2 AND status IN ('expired', 'failed')";
// Records a key a lost or superseded claim may have published.
const char* const retire_key =
    "INSERT OR IGNORE INTO stale_files (job_id, stale_key, retired_at) VALUES (?1, ?2, ?3)";
const char* const clear_stale_file = "DELETE FROM stale_files WHERE job_id = ?1 AND stale_key = ?2";
// Moves the job's live file key to stale_files unless it is empty or ?2.
const char* const retire_file =
    "INSERT OR IGNORE INTO stale_files (job_id, stale_key, retired_at) "
    "SELECT id, file_key, ?3 FROM jobs WHERE id = ?1 AND file_key NOT IN ('', ?2)";

const char* const regenerate =
    "UPDATE jobs SET status = 'queued', attempt = 0, error_code = NULL, error_message = NULL, "
    "completed_at = NULL, expires_at = NULL, row_count = NULL, file_size = NULL, checksum = '', "
    "file_key = '', lease_owner = '', lease_expires_at = NULL, updated_at = ?2, "
    "version = version + 1 WHERE id = ?1";

const char* const prune_jobs =
    "DELETE FROM jobs WHERE status IN ('expired', 'failed') AND updated_at < ?1 "
    "AND file_key = '' AND NOT EXISTS (SELECT 1 FROM stale_files WHERE job_id = jobs.id)";
const char* const prune_keys = "DELETE FROM idempotency_keys WHERE created_at < ?1";
} // namespace sql

#undef EE_JOB_COLUMNS

} // namespace exportengine::adapters::sqlite_store_detail
