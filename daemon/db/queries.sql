-- Every SQL statement fa-sync runs, by name. Loaded by daemon/db/queries.py.
-- Each query: a `-- name:` header, then a one-line description.

-- ============================================================================ locks

-- name: advisory_xact_lock
-- Transaction-scoped advisory lock (works behind PgBouncer in transaction mode).
SELECT pg_advisory_xact_lock($1);

-- name: identity_lock
-- One person's identity lock ($1 key) for this transaction (schema.sql fa_identity_lock).
SELECT fa_identity_lock($1);

-- name: identity_locks
-- Lock several people at a FreeAgent client ($1 keys, $2 lock wait, $3 idle bound, $4 client)
-- and list the rows creating one of them: (id, identity, intent_at), newest first.
SELECT * FROM fa_identity_locks($1::bigint[], $2, $3, $4);

-- name: decide_creates
-- Rows that would be created if nothing matched them: lock, check and commit their create
-- intents in one statement ($1 client, $2 run, $3 fence, $4 lock wait, $5 ids, $6 keys,
-- $7 profiles, $8 e-mails of the ledger rows, $9 e-mails as sent, $10 [{id, intent, next_at}]).
SELECT * FROM fa_decide_creates($1, $2, $3, $4, $5::bigint[], $6::bigint[], $7::bigint[],
                                $8::text[], $9::text[], $10::jsonb);

-- name: lock_timeouts
-- Bound this transaction's lock waits, and how long it may sit idle holding them.
SELECT set_config('lock_timeout', $1, true),
       set_config('idle_in_transaction_session_timeout', $2, true);

-- name: health_ping
-- /readyz: the database answers.
SELECT 1;

-- ============================================================================ schema

-- name: schema_recorded
-- Whether the database records which schema.sql it has (false before the first migration).
SELECT to_regclass('fa_sync_schema') IS NOT NULL;

-- name: schema_digest
-- Digest of the schema.sql applied last.
SELECT digest FROM fa_sync_schema;

-- name: schema_digest_set
-- Remember the digest of the schema.sql just applied.
INSERT INTO fa_sync_schema (singleton, digest) VALUES (true, $1)
ON CONFLICT (singleton) DO UPDATE SET digest = EXCLUDED.digest, applied_at = now();

-- ============================================================================ clients

-- name: client_insert
-- Register a FreeAgent OAuth client.
INSERT INTO freeagent_client (name, environment, base_url, client_id, client_secret, redirect_uri,
                              rate_limit_per_minute, rate_limit_per_hour, rate_limit_test)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING *;

-- name: client_list
-- All FreeAgent clients.
SELECT * FROM freeagent_client ORDER BY id;

-- name: client_get
-- One client by id.
SELECT * FROM freeagent_client WHERE id = $1;

-- name: client_get_by_name
-- One client by name.
SELECT * FROM freeagent_client WHERE name = $1;

-- name: client_delete
-- Remove a client (refused by the FK while a profile uses it).
DELETE FROM freeagent_client WHERE name = $1 RETURNING id;

-- name: client_lock
-- Lock the client row while refreshing its tokens: serialises refreshes across replicas.
SELECT * FROM freeagent_client WHERE id = $1 FOR UPDATE;

-- name: client_save_tokens
-- Store a new token pair; token_version tells other holders their copy is stale.
UPDATE freeagent_client
   SET access_token = $2, access_token_expires_at = $3,
       refresh_token = $4, refresh_token_expires_at = $5,
       token_version = token_version + 1, updated_at = now()
 WHERE id = $1
RETURNING token_version;

-- name: client_secrets_lock
-- Every client's secret columns, locked while they are sealed again (migrate, rotate-key).
SELECT id, client_secret, access_token, refresh_token FROM freeagent_client ORDER BY id FOR UPDATE;

-- name: client_secrets_set
-- Store a client's secrets sealed again: same values, so token_version and updated_at stay.
UPDATE freeagent_client SET client_secret = $2, access_token = $3, refresh_token = $4
 WHERE id = $1;

-- name: client_save_identity
-- Remember whom the tokens act for (budget key, permission gate) and the company.
UPDATE freeagent_client
   SET user_url = $2, user_email = $3, permission_level = $4,
       company_name = $5, company_subdomain = $6, updated_at = now()
 WHERE id = $1;

-- name: client_save_config
-- Store collected FreeAgent configuration data (company, users, categories...).
UPDATE freeagent_client SET config_data = $2, config_collected_at = now(), updated_at = now()
 WHERE id = $1;

-- name: client_clear_config
-- Delete collected configuration data.
UPDATE freeagent_client SET config_data = '{}'::jsonb, config_collected_at = NULL, updated_at = now()
 WHERE id = $1;

-- name: client_mark_reauth
-- FreeAgent refused the refresh token: flag the client's current token pair as dead.
INSERT INTO freeagent_client_reauth (client_id, token_version, reason)
SELECT id, token_version, $2 FROM freeagent_client WHERE id = $1
ON CONFLICT (client_id) DO UPDATE
   SET token_version = EXCLUDED.token_version, reason = EXCLUDED.reason, refused_at = now();

-- name: status_clients
-- `status`: each client's token expiry and re-authorisation flag (never the tokens).
SELECT c.id, c.name, c.user_url, c.rate_limit_per_minute, c.rate_limit_per_hour,
       c.rate_limit_test, c.access_token IS NOT NULL AS authorised, c.access_token_expires_at,
       c.refresh_token_expires_at, a.reason AS reauth_reason, a.refused_at AS reauth_at
  FROM freeagent_client c
  LEFT JOIN freeagent_client_reauth a
         ON a.client_id = c.id AND a.token_version = c.token_version
 ORDER BY c.id;

-- ============================================================================ rate limits

-- name: rate_acquire
-- Take one request, never answered, from a user's budget ($4/$5: how long a grant counts per
-- window); 0 = go, else seconds to wait.
SELECT fa_rate_acquire($1, $2, $3, $4, $5);

-- name: rate_acquire_priority
-- rate_acquire in the priority lane: ordinary senders of the user yield while it waits.
SELECT fa_rate_acquire_priority($1, $2, $3, $4, $5);

-- name: rate_take
-- Record answered grants ($9 ids answered at $10), then take up to $2 requests from a user's
-- shared budget and from the egress $12 (limit $13 a minute; NULL: none), in the priority
-- lane when $11: (granted, wait, grant_id, granted_at); granted 0 = wait `wait` seconds.
SELECT * FROM fa_rate_take($1, $2, $3, $4, $5, $6, $7, $8, $9::bigint[], $10::timestamptz[],
                           $11::boolean, $12::text, $13::integer);

-- name: rate_block
-- A 429 pauses every sender of this user until Retry-After ($2 s) has passed, and every sender
-- of the egress $3 when another user was refused within its own Retry-After: egress paused?
SELECT fa_rate_block($1, $2, $3::text);

-- name: rate_budget_merge
-- Requests counted under a provisional key ($1, `client:<id>`) belong to the user's key ($2).
WITH moved AS (
    UPDATE rate_event SET budget_key = $2 WHERE budget_key = $1 RETURNING 1
)
INSERT INTO rate_budget (budget_key, blocked_until)
SELECT $2, blocked_until FROM rate_budget WHERE budget_key = $1
ON CONFLICT (budget_key) DO UPDATE
   SET blocked_until = greatest(rate_budget.blocked_until, EXCLUDED.blocked_until);

-- name: rate_used
-- `status`: requests counted per budget key over the last minute and hour ending at $2.
SELECT k.key AS budget_key,
       coalesce(sum(e.n) FILTER (WHERE e.at > $2::timestamptz - interval '60 seconds'), 0)::int
           AS last_minute,
       coalesce(sum(e.n), 0)::int AS last_hour, b.blocked_until
  FROM unnest($1::text[]) AS k(key)
  LEFT JOIN rate_event e ON e.budget_key = k.key AND e.at > $2::timestamptz - interval '3600 seconds'
  LEFT JOIN rate_budget b ON b.budget_key = k.key
 GROUP BY k.key, b.blocked_until;

-- name: egress_used
-- `status`: requests granted under egress key $1 in the minute ending at $2, and until when a
-- 429 pauses the egress (NULL: not paused).
SELECT coalesce((SELECT sum(n) FROM rate_event
                  WHERE egress_key = $1 AND at > $2::timestamptz - interval '60 seconds'),
                0)::int AS last_minute,
       (SELECT blocked_until FROM rate_budget WHERE budget_key = $1) AS blocked_until;

-- ============================================================================ magento

-- name: connection_insert
-- Register a Magento connection.
INSERT INTO magento_connection (name, base_url, store_code, access_token,
                                consumer_key, consumer_secret, access_token_secret)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *;

-- name: connection_list
-- All Magento connections.
SELECT * FROM magento_connection ORDER BY id;

-- name: connection_get
-- One Magento connection by id.
SELECT * FROM magento_connection WHERE id = $1;

-- name: connection_get_by_name
-- One Magento connection by name.
SELECT * FROM magento_connection WHERE name = $1;

-- name: connection_secrets_lock
-- Every connection's secret columns, locked while they are sealed again.
SELECT id, access_token, consumer_secret, access_token_secret FROM magento_connection
 ORDER BY id FOR UPDATE;

-- name: connection_secrets_set
-- Store a connection's secrets sealed again.
UPDATE magento_connection SET access_token = $2, consumer_secret = $3, access_token_secret = $4
 WHERE id = $1;

-- name: webhook_secret_set
-- Store (or replace) a connection's webhook secret, sealed.
INSERT INTO magento_webhook (id, secret) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET secret = EXCLUDED.secret, updated_at = now();

-- name: webhook_auth_set
-- Store (or replace) a connection's fixed-header or Basic credentials, the secret sealed;
-- the HMAC secret, if any, stays.
INSERT INTO magento_webhook (id, auth_kind, auth_name, auth_secret) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE
   SET auth_kind = EXCLUDED.auth_kind, auth_name = EXCLUDED.auth_name,
       auth_secret = EXCLUDED.auth_secret, updated_at = now();

-- name: webhook_secret_clear
-- Switch a connection's webhook off.
DELETE FROM magento_webhook WHERE id = $1 RETURNING id;

-- name: webhook_secrets
-- Connections accepting webhooks, with their sealed secrets and credentials.
SELECT w.id, w.secret, w.auth_kind, w.auth_name, w.auth_secret, m.name
  FROM magento_webhook w JOIN magento_connection m ON m.id = w.id
 ORDER BY w.id;

-- name: webhook_secrets_lock
-- Every webhook secret, locked while they are sealed again.
SELECT id, secret, auth_secret FROM magento_webhook ORDER BY id FOR UPDATE;

-- name: webhook_secrets_set
-- Store a connection's webhook secrets sealed again.
UPDATE magento_webhook SET secret = $2, auth_secret = $3 WHERE id = $1;

-- name: webhook_seen
-- Remember an accepted delivery's signature; nothing returned when it was seen before (replay).
-- Signatures older than $2 seconds are forgotten: their timestamps are refused anyway.
WITH purge AS (
    DELETE FROM webhook_seen WHERE seen_at < now() - make_interval(secs => $2::float8)
)
INSERT INTO webhook_seen (signature) VALUES ($1)
ON CONFLICT DO NOTHING
RETURNING signature;

-- name: webhook_forget
-- A delivery that could not be queued: its retry must not count as a replay.
DELETE FROM webhook_seen WHERE signature = $1;

-- name: connection_delete
-- Remove a Magento connection.
DELETE FROM magento_connection WHERE name = $1 RETURNING id;

-- ============================================================================ profiles

-- name: profile_insert
-- Create a profile with defaults for every column not given.
INSERT INTO profile (name, type, client_id, connection_id, schedule, settings)
VALUES ($1, $2, $3, $4, coalesce($5, '*/15 * * * *'), coalesce($6, '{}'::jsonb))
RETURNING *;

-- name: profile_list
-- All profiles with their run-time state.
SELECT p.*, s.config_error, s.magento_watermark
  FROM profile p LEFT JOIN profile_state s ON s.profile_id = p.id
 ORDER BY p.id;

-- name: profile_list_named
-- Profiles (all, or those named in $1) with their client's and connection's names.
SELECT p.*, s.config_error, c.name AS client_name, m.name AS magento_name
  FROM profile p
  LEFT JOIN profile_state s ON s.profile_id = p.id
  LEFT JOIN freeagent_client c ON c.id = p.client_id
  LEFT JOIN magento_connection m ON m.id = p.connection_id
 WHERE $1::text[] IS NULL OR p.name = ANY($1)
 ORDER BY p.name;

-- name: profile_get
-- One profile by id.
SELECT p.*, s.config_error, s.magento_watermark
  FROM profile p LEFT JOIN profile_state s ON s.profile_id = p.id
 WHERE p.id = $1;

-- name: profile_get_by_name
-- One profile by name.
SELECT p.*, s.config_error, s.magento_watermark
  FROM profile p LEFT JOIN profile_state s ON s.profile_id = p.id
 WHERE p.name = $1;

-- name: profiles_to_export
-- `contact export` without --profile: every enabled profile (ids $1 NULL), or the profiles of the
-- ledger rows $1 with those rows, in profile id order. Rows not on the ledger come back with
-- profile_id NULL.
SELECT p.id AS profile_id, p.name, array_agg(e.id ORDER BY e.id) FILTER (WHERE e.id IS NOT NULL) AS ids
  FROM profile p JOIN contact_entity e ON e.profile_id = p.id AND e.id = ANY($1)
 WHERE $1::bigint[] IS NOT NULL
 GROUP BY p.id, p.name
UNION ALL
SELECT NULL, NULL, array_agg(a.id ORDER BY a.id)
  FROM unnest($1::bigint[]) AS a(id)
 WHERE NOT EXISTS (SELECT 1 FROM contact_entity e WHERE e.id = a.id)
HAVING count(*) > 0
UNION ALL
SELECT p.id, p.name, NULL
  FROM profile p
 WHERE $1::bigint[] IS NULL AND p.enabled
ORDER BY 1 NULLS FIRST;

-- name: profile_update
-- `profile set`: change any column; NULL leaves a column as it is.
UPDATE profile
   SET enabled = coalesce($2, enabled),
       schedule = coalesce($3, schedule),
       timezone = coalesce($4, timezone),
       batch_size = coalesce($5, batch_size),
       retry_enabled = coalesce($6, retry_enabled),
       retry_max_attempts = coalesce($7, retry_max_attempts),
       api_behaviour = coalesce($8, api_behaviour),
       collect_mode = coalesce($9, collect_mode),
       collection_size = coalesce($10, collection_size),
       history_enabled = coalesce($11, history_enabled),
       client_id = coalesce($12, client_id),
       connection_id = coalesce($13, connection_id),
       settings = coalesce($14, settings)
 WHERE name = $1
RETURNING id;

-- name: profile_delete
-- Delete a profile (its runs and ledger go with it).
DELETE FROM profile WHERE name = $1 RETURNING id;

-- name: profile_set_error
-- Flag a profile the daemon cannot schedule; NULL clears the flag.
INSERT INTO profile_state (profile_id, config_error, config_error_at)
VALUES ($1, $2, CASE WHEN $2::text IS NULL THEN NULL ELSE now() END)
ON CONFLICT (profile_id) DO UPDATE
   SET config_error = EXCLUDED.config_error, config_error_at = EXCLUDED.config_error_at;

-- name: profile_state_get
-- Watermarks of a profile.
SELECT * FROM profile_state WHERE profile_id = $1;

-- name: profile_set_watermarks
-- Advance the collect watermarks after a successful collect (never backwards). Collect clamps
-- new ones to the run's now; a stored one after $5 (now) was pinned by a future-dated record
-- and is replaced, since it would hide every later change.
INSERT INTO profile_state (profile_id, magento_watermark, guest_watermark, last_full_collect_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (profile_id) DO UPDATE
   SET magento_watermark = CASE WHEN profile_state.magento_watermark > $5::timestamptz
                                THEN EXCLUDED.magento_watermark
                                ELSE greatest(EXCLUDED.magento_watermark,
                                              profile_state.magento_watermark) END,
       guest_watermark = CASE WHEN profile_state.guest_watermark > $5::timestamptz
                              THEN EXCLUDED.guest_watermark
                              ELSE greatest(EXCLUDED.guest_watermark,
                                            profile_state.guest_watermark) END,
       last_full_collect_at = coalesce(EXCLUDED.last_full_collect_at,
                                       profile_state.last_full_collect_at);

-- ============================================================================ runs

-- name: run_expire_stale
-- Close runs whose owner stopped renewing its lease (crashed replica) so the profile is free.
UPDATE profile_run
   SET status = 'error', finished_at = now(),
       error_summary = 'lease expired: replica ' || coalesce(owner, '?') || ' stopped renewing it'
 WHERE profile_id = $1 AND status = 'running' AND lease_expires_at < now()
RETURNING id;

-- name: run_record_skipped
-- Account for a fire that could not run (profile busy, disabled, misconfigured).
INSERT INTO profile_run (profile_id, trigger, scheduled_for, status, started_at, finished_at,
                         error_summary, owner)
VALUES ($1, $2, $3, 'skipped', now(), now(), $4, $5)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: run_claim_many
-- Claim fires ($1 profile ids, $2 triggers, $3 scheduled_for; $4 owner, $5 lease seconds) in
-- one statement: a row per fire claimed, none for a fire already taken or a profile with a
-- running run (profile_run_one_per_fire and profile_run_one_running decide). Rows go in
-- profile and fire order: two replicas claiming overlapping fires wait for each other's rows
-- in the same order, never in a cycle (a deadlock would fail every fire of both statements).
-- A profile under a dry run is passed over (fa_not_rehearsed), not waited for.
INSERT INTO profile_run (profile_id, trigger, scheduled_for, status, started_at, owner,
                         lease_expires_at, fence)
SELECT f.profile_id, f.trigger::run_trigger, f.scheduled_for, 'running', now(), $4,
       now() + make_interval(secs => $5), nextval('profile_run_fence')
  FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS f (profile_id, trigger,
                                                                 scheduled_for)
 WHERE fa_not_rehearsed(f.profile_id)
 ORDER BY f.profile_id, f.scheduled_for
ON CONFLICT DO NOTHING
RETURNING *;

-- name: replica_sessions
-- Live replicas: the application names ($1, a LIKE pattern) of the daemons' LISTEN sessions
-- on this database, one per running daemon (daemon/claims.py: who claims a fire first).
SELECT DISTINCT application_name FROM pg_stat_activity
 WHERE datname = current_database() AND application_name LIKE $1;

-- name: fires_taken
-- Which of these fires ($1 profile ids, $2 scheduled_for) a replica has claimed or skipped:
-- a replica that is not a fire's assignee asks before it tries to take the fire over.
SELECT f.profile_id, f.scheduled_for
  FROM unnest($1::bigint[], $2::timestamptz[]) AS f (profile_id, scheduled_for)
 WHERE EXISTS (SELECT 1 FROM profile_run r
                WHERE r.profile_id = f.profile_id AND r.scheduled_for = f.scheduled_for);

-- name: profile_not_rehearsed
-- Whether no dry run of profile $1 is in progress; if so, holds it off until this transaction
-- ends (schema.sql fa_not_rehearsed): writes to its ledger then wait for no rehearsal.
SELECT fa_not_rehearsed($1);

-- name: rehearsal_begin
-- Mark this transaction a dry run's rehearsal (schema.sql fa_identity_lock reads it).
SELECT set_config('fa_sync.rehearsal', 'on', true);

-- name: rehearse_profile
-- A dry run's hold on its profile (schema.sql fa_rehearse_profile), until its transaction ends.
SELECT fa_rehearse_profile($1);

-- name: run_claim_refused
-- Why claims of fires ($1 profile ids, $2 scheduled_for) were refused: per fire, its own row
-- (a replica claimed or skipped it) first, else the profile's running run and whether its
-- lease ran out, else (rehearsed, id NULL) a dry run of the profile in progress; no row for a
-- fire whose refusing run has ended since.
SELECT DISTINCT ON (f.profile_id, f.scheduled_for)
       f.profile_id, f.scheduled_for AS fire, r.id, r.owner,
       coalesce(r.scheduled_for = f.scheduled_for, false) AS same_fire,
       coalesce(r.lease_expires_at < now(), false) AS stale,
       r.id IS NULL AS rehearsed
  FROM unnest($1::bigint[], $2::timestamptz[]) AS f (profile_id, scheduled_for)
  LEFT JOIN profile_run r ON r.profile_id = f.profile_id
                         AND (r.scheduled_for = f.scheduled_for OR r.status = 'running')
 WHERE r.id IS NOT NULL OR NOT fa_not_rehearsed(f.profile_id)
 ORDER BY f.profile_id, f.scheduled_for, r.scheduled_for = f.scheduled_for DESC;

-- name: run_active
-- The running run of a profile, if any.
SELECT * FROM profile_run WHERE profile_id = $1 AND status = 'running';

-- name: run_renew
-- Extend the lease; no row means the run was taken over (fencing).
UPDATE profile_run SET lease_expires_at = now() + make_interval(secs => $3)
 WHERE id = $1 AND fence = $2 AND status = 'running'
RETURNING id;

-- name: run_finish
-- Close a run with its outcome and counts (only while we still own it).
UPDATE profile_run
   SET status = $3::run_status, finished_at = now(), collected = $4, created = $5, updated = $6,
       skipped = $7, failed = $8, linked = $9, unchanged = $10, retrying = $11,
       error_summary = $12, messages = $13, removed = $14, drifted = $15, needs_review = $16,
       lease_expires_at = NULL
 WHERE id = $1 AND fence = $2 AND status = 'running'
RETURNING *;

-- name: profiles_for_fire
-- Profiles by id ($1), each with what a fire decides first: its breaker (NULLs when closed).
-- Fires arriving together read their profiles in this one statement (daemon/db/batched.py).
SELECT p.*, s.config_error, s.magento_watermark, b.failures AS breaker_failures,
       b.open_until AS breaker_open_until, b.reason AS breaker_reason
  FROM profile p
  LEFT JOIN profile_state s ON s.profile_id = p.id
  LEFT JOIN profile_breaker b ON b.profile_id = p.id
 WHERE p.id = ANY($1::bigint[]);

-- name: breaker_trip
-- A run ended on a run-level error: one more failure, back off base * 2^(failures-1), capped.
INSERT INTO profile_breaker AS b (profile_id, failures, open_until, reason)
VALUES ($1, 1, $2::timestamptz + make_interval(secs => $3), $5)
ON CONFLICT (profile_id) DO UPDATE
   SET failures = b.failures + 1,
       open_until = $2::timestamptz + make_interval(secs => least($4, $3 * 2 ^ b.failures)),
       reason = $5
RETURNING failures, open_until, reason;

-- name: breaker_reset
-- A run succeeded: close the breaker.
DELETE FROM profile_breaker WHERE profile_id = $1;

-- name: run_release_owner
-- Shutdown: close this replica's running runs so another replica can take the profile at once.
UPDATE profile_run
   SET status = 'interrupted', finished_at = now(),
       error_summary = 'interrupted by shutdown; unfinished records resume on the next run'
 WHERE owner = $1 AND status = 'running'
RETURNING id;

-- name: run_history
-- Recent runs, newest first, optionally for one profile.
SELECT r.*, p.name AS profile_name
  FROM profile_run r JOIN profile p ON p.id = r.profile_id
 WHERE $1::bigint IS NULL OR r.profile_id = $1
 ORDER BY r.scheduled_for DESC, r.id DESC
 LIMIT $2;

-- name: metrics_last_success
-- /metrics: finish time of each profile's newest complete or warning run.
SELECT p.name AS profile, max(r.finished_at) AS finished_at
  FROM profile_run r JOIN profile p ON p.id = r.profile_id
 WHERE r.status IN ('complete', 'warning') AND r.finished_at IS NOT NULL
 GROUP BY p.name;

-- name: status_last_runs
-- `status`: each profile's newest run that started (any outcome), with its breaker.
SELECT p.id AS profile_id, r.id AS run_id, r.status::text AS status, r.started_at,
       r.finished_at, r.collected, r.created, r.updated, r.linked, r.unchanged, r.skipped,
       r.failed, r.retrying, r.needs_review, r.error_summary,
       b.open_until AS breaker_open_until
  FROM profile p
  LEFT JOIN LATERAL (SELECT * FROM profile_run
                      WHERE profile_id = p.id AND status <> 'pending'
                      ORDER BY scheduled_for DESC, id DESC LIMIT 1) r ON true
  LEFT JOIN profile_breaker b ON b.profile_id = p.id;

-- name: run_get
-- One run by id.
SELECT * FROM profile_run WHERE id = $1;

-- name: run_purge
-- Retention: drop finished history older than the cut-off.
DELETE FROM profile_run WHERE status <> 'running' AND scheduled_for < $1;

-- name: run_delete_history_disabled
-- Profiles with history disabled keep only their last finished run.
DELETE FROM profile_run r
 USING profile p
 WHERE p.id = r.profile_id AND NOT p.history_enabled AND r.status <> 'running'
   AND r.id < (SELECT max(id) FROM profile_run x WHERE x.profile_id = r.profile_id);

-- ============================================================================ ledger

-- name: entity_upsert
-- Queue collected Magento records, a page in one statement: new rows are pending; a changed
-- record goes back to pending. $1: the profile; then an array per column: $2 source keys
-- (unique within the call), $3 customer ids, $4 website ids, $5 e-mails, $6 records, $7 what
-- collect cleaned ({"cleaned": [...]} or {}, replacing the previous note). A row out for
-- export (processing, creating) keeps its status and is flagged `recollected`: the export
-- sends what it claimed, and its outcome then puts the row back in the queue (priority lane)
-- so the newer record is sent too, never lost under the older one's outcome.
INSERT INTO contact_entity (profile_id, source_key, magento_customer_id, website_id, email,
                            source_data, collected_at, status, metadata)
SELECT $1, r.source_key, r.customer_id, r.website_id, r.email, r.data, now(), 'pending',
       r.cleaned
  FROM unnest($2::text[], $3::bigint[], $4::integer[], $5::text[], $6::jsonb[], $7::jsonb[])
       AS r(source_key, customer_id, website_id, email, data, cleaned)
ON CONFLICT (profile_id, source_key) DO UPDATE
   SET source_data = EXCLUDED.source_data, email = EXCLUDED.email,
       metadata = (contact_entity.metadata - 'cleaned') || EXCLUDED.metadata
                  || CASE WHEN contact_entity.status IN ('processing', 'creating')
                          THEN '{"recollected": true}'::jsonb ELSE '{}'::jsonb END,
       website_id = EXCLUDED.website_id, collected_at = now(), updated_at = now(),
       status = CASE WHEN contact_entity.status IN ('processing', 'creating')
                     THEN contact_entity.status ELSE 'pending'::entity_status END,
       attempts = CASE WHEN contact_entity.status IN ('processing', 'creating')
                       THEN contact_entity.attempts ELSE 0 END,
       next_attempt_at = NULL
 WHERE contact_entity.source_data IS DISTINCT FROM EXCLUDED.source_data
    -- guests collected before they had a website get it (identity joins them by website)
    OR contact_entity.website_id IS DISTINCT FROM EXCLUDED.website_id;

-- name: entity_upsert_unstorable
-- A collected record that cannot be queued (PostgreSQL refuses it even after cleaning, or a
-- guest order has no e-mail at all): keep its key, skipped, with why.
INSERT INTO contact_entity (profile_id, source_key, magento_customer_id, source_data, status,
                            last_error, collected_at)
VALUES ($1, $2, $3, '{}'::jsonb, 'skipped', $4, now())
ON CONFLICT (profile_id, source_key) DO UPDATE
   SET status = 'skipped', last_error = EXCLUDED.last_error, collected_at = now(),
       updated_at = now(), next_attempt_at = NULL
 WHERE contact_entity.status NOT IN ('processing', 'creating');

-- name: entity_exists
-- Whether a source key is already on the ledger (new-customer queueing can be switched off).
SELECT EXISTS (SELECT 1 FROM contact_entity WHERE profile_id = $1 AND source_key = $2);

-- name: entity_claim_batch
-- Claim due rows for this run ($6 = now); SKIP LOCKED keeps concurrent claimers apart. A row
-- with a create intent is never claimed before the intent has settled ($7 = settle seconds),
-- whatever next_attempt_at says: its POST may still be committed by FreeAgent. Rows in the
-- priority lane are the lane's (entity_claim_priority), not a backlog batch's. Rows another
-- run held (processing, creating) come before pending ones; see fa_claim_batch in schema.sql.
SELECT * FROM fa_claim_batch($1, $2, $3, $4::bigint[], $5, $6, $7::float8);

-- name: entity_claim_priority
-- The priority lane: claim due rows queued by a Magento event ($4 = now), ahead of the backlog,
-- under the run's claim and fence; claiming clears the flag (a retry waits with the backlog).
WITH due AS (
    SELECT id FROM contact_entity
     WHERE profile_id = $1 AND priority
       AND (status = 'pending'
            OR (status = 'processing' AND claimed_by_run IS DISTINCT FROM $2))
       AND (next_attempt_at IS NULL OR next_attempt_at <= $4)
       AND metadata -> 'create_intent' IS NULL
     ORDER BY id
     LIMIT $5
     FOR UPDATE SKIP LOCKED
)
UPDATE contact_entity c
   SET status = 'processing', priority = false,
       metadata = CASE WHEN c.metadata ? 'recollected' THEN c.metadata - 'recollected'
                       ELSE c.metadata END,
       claimed_by_run = $2, claim_fence = $3, updated_at = now()
  FROM due
 WHERE c.id = due.id
RETURNING c.*;

-- name: entity_work_due
-- Whether a run would claim anything now ($2 = run id, $3 = now, $4 = settle seconds): what
-- entity_claim_batch (without ids) or entity_claim_priority would take, read without locking.
-- A run with nothing due ends without asking FreeAgent anything.
SELECT EXISTS (
    SELECT 1 FROM contact_entity
     WHERE profile_id = $1
       AND NOT priority
       AND ((status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= $3))
            OR (status IN ('processing', 'creating')
                AND claimed_by_run IS DISTINCT FROM $2
                AND (next_attempt_at IS NULL OR next_attempt_at <= $3)))
       AND (metadata -> 'create_intent' IS NULL
            OR (metadata -> 'create_intent' ->> 'at')::timestamptz
               + make_interval(secs => $4::float8) <= $3)
) OR EXISTS (
    SELECT 1 FROM contact_entity
     WHERE profile_id = $1 AND priority
       AND (status = 'pending'
            OR (status = 'processing' AND claimed_by_run IS DISTINCT FROM $2))
       AND (next_attempt_at IS NULL OR next_attempt_at <= $3)
       AND metadata -> 'create_intent' IS NULL
);

-- name: entity_priority_waiting
-- Whether rows wait in a profile's priority lane that entity_claim_priority would take now.
SELECT EXISTS (SELECT 1 FROM contact_entity
                WHERE profile_id = $1 AND priority AND status = 'pending'
                  AND (next_attempt_at IS NULL OR next_attempt_at <= now())
                  AND metadata -> 'create_intent' IS NULL);

-- name: priority_waiting_profiles
-- Enabled profiles with rows waiting in their priority lane (resumed when LISTEN starts).
SELECT DISTINCT e.profile_id FROM contact_entity e JOIN profile p ON p.id = e.profile_id
 WHERE e.priority AND e.status = 'pending' AND p.enabled;

-- name: entity_prioritise
-- A Magento event about this row: put it in the priority lane (if it is queued at all).
UPDATE contact_entity SET priority = true, next_attempt_at = NULL, updated_at = now()
 WHERE profile_id = $1 AND source_key = $2 AND status = 'pending'
RETURNING id;

-- name: entity_rows_of_customer
-- Ledger rows of a profile for one Magento customer (a delete event).
SELECT id, magento_customer_id FROM contact_entity
 WHERE profile_id = $1 AND magento_customer_id = $2
   AND NOT coalesce((metadata ->> 'deleted_in_magento')::boolean, false);

-- name: priority_notify
-- Wake the run of a profile (on any replica): a row waits in its priority lane.
SELECT pg_notify('fa_sync_priority', $1::text);

-- name: profiles_of_connection
-- Enabled profiles reading this Magento connection (a webhook event concerns each of them).
SELECT p.*, s.config_error, s.magento_watermark
  FROM profile p LEFT JOIN profile_state s ON s.profile_id = p.id
 WHERE p.connection_id = $1 AND p.enabled
 ORDER BY p.id;

-- name: entity_count_unfinished
-- Rows of a profile not yet done (due now or later, or claimed by a run).
SELECT count(*) FROM contact_entity
 WHERE profile_id = $1 AND status IN ('pending', 'processing', 'creating');

-- name: entity_settling
-- Rows of a profile whose create is still settling at $2 ($3 = settle seconds), whichever
-- run sent it, and when the last of them settles.
SELECT count(*)::int AS settling,
       max((metadata -> 'create_intent' ->> 'at')::timestamptz
           + make_interval(secs => $3::float8)) AS until
  FROM contact_entity
 WHERE profile_id = $1 AND status = 'creating' AND metadata -> 'create_intent' IS NOT NULL
   AND (metadata -> 'create_intent' ->> 'at')::timestamptz
       + make_interval(secs => $3::float8) > $2;

-- name: entity_release_run
-- Shutdown or lost lease: hand this run's unfinished rows back to the queue.
UPDATE contact_entity
   SET status = CASE WHEN status = 'creating' THEN status ELSE 'pending'::entity_status END,
       claimed_by_run = NULL, updated_at = now()
 WHERE claimed_by_run = $1 AND status IN ('processing', 'creating');

-- name: entity_mark_creating
-- Write-ahead intent before a POST: a crash after FreeAgent's 201 is reconciled, not repeated.
-- Run on the identity lock's connection and committed with it, before the POST is sent.
UPDATE contact_entity c
   SET status = 'creating', metadata = c.metadata || jsonb_build_object('create_intent', $4::jsonb),
       next_attempt_at = $5, updated_at = now()
 WHERE c.id = $1 AND c.claimed_by_run = $2 AND c.claim_fence = $3
   AND EXISTS (SELECT 1 FROM profile_run r WHERE r.id = $2 AND r.fence = $3
                                            AND r.status = 'running' FOR SHARE)
RETURNING c.id;

-- name: entity_create_settling
-- A POST whose outcome is unknown: keep the intent, release the row until it has settled ($4).
-- Not a failed attempt (FreeAgent may have succeeded): attempt_history records it, attempts
-- stays, so an outage cannot dead-letter settling rows.
UPDATE contact_entity c
   SET last_error = $5, next_attempt_at = $4,
       attempt_history = fa_jsonb_append_capped(c.attempt_history, $6::jsonb, 25),
       claimed_by_run = NULL, processed_at = now(), updated_at = now()
 WHERE c.id = $1 AND c.claimed_by_run = $2 AND c.claim_fence = $3 AND c.status = 'creating'
   AND EXISTS (SELECT 1 FROM profile_run r WHERE r.id = $2 AND r.fence = $3
                                            AND r.status = 'running' FOR SHARE)
RETURNING c.id;

-- name: entity_restamp_intent
-- A create decided ahead of its turn is about to be sent: its intent's time becomes now ($4,
-- ISO text) and the row is not claimed again before $5 (now + settle window).
UPDATE contact_entity c
   SET metadata = jsonb_set(c.metadata, '{create_intent,at}', to_jsonb($4::text)),
       next_attempt_at = $5, updated_at = now()
 WHERE c.id = $1 AND c.claimed_by_run = $2 AND c.claim_fence = $3 AND c.status = 'creating'
   AND c.metadata ? 'create_intent'
   AND EXISTS (SELECT 1 FROM profile_run r WHERE r.id = $2 AND r.fence = $3
                                            AND r.status = 'running' FOR SHARE)
RETURNING c.id;

-- name: entity_clear_intent
-- FreeAgent certainly did not create the contact (429, 4xx, nothing sent): forget the intent.
UPDATE contact_entity c
   SET status = 'processing', metadata = c.metadata - 'create_intent', next_attempt_at = NULL,
       updated_at = now()
 WHERE c.id = $1 AND c.claimed_by_run = $2 AND c.claim_fence = $3
   AND EXISTS (SELECT 1 FROM profile_run r WHERE r.id = $2 AND r.fence = $3
                                            AND r.status = 'running' FOR SHARE)
RETURNING c.id;

-- name: entity_create_in_flight
-- Another ledger row at this FreeAgent client whose create of the same person is unsettled.
SELECT e.id, (e.metadata -> 'create_intent' ->> 'at')::timestamptz AS intent_at
  FROM contact_entity e JOIN profile p ON p.id = e.profile_id
 WHERE p.client_id = $1 AND e.id <> $2 AND e.status = 'creating'
   AND e.metadata -> 'create_intent' ->> 'identity' = $3
 ORDER BY intent_at DESC
 LIMIT 1;

-- name: entity_mark_creating_many
-- entity_mark_creating for several rows ($3: [{id, intent, next_at}]), in one statement.
UPDATE contact_entity c
   SET status = 'creating', metadata = c.metadata || jsonb_build_object('create_intent', m.intent),
       next_attempt_at = m.next_at, updated_at = now()
  FROM jsonb_to_recordset($3::jsonb) AS m(id bigint, intent jsonb, next_at timestamptz)
 WHERE c.id = m.id AND c.claimed_by_run = $1 AND c.claim_fence = $2
   AND EXISTS (SELECT 1 FROM profile_run r WHERE r.id = $1 AND r.fence = $2
                                            AND r.status = 'running' FOR SHARE)
RETURNING c.id;

-- name: entity_defer
-- Wait for another row's unsettled create of the same person: no attempt is used up.
UPDATE contact_entity c
   SET status = CASE WHEN c.status = 'creating' THEN 'creating'::entity_status
                     ELSE 'pending'::entity_status END,
       next_attempt_at = $4, last_error = $5,
       attempt_history = fa_jsonb_append_capped(c.attempt_history, $6::jsonb, 25),
       claimed_by_run = NULL, updated_at = now()
 WHERE c.id = $1 AND c.claimed_by_run = $2 AND c.claim_fence = $3
   AND EXISTS (SELECT 1 FROM profile_run r WHERE r.id = $2 AND r.fence = $3
                                            AND r.status = 'running' FOR SHARE)
RETURNING c.id;

-- name: entity_finish
-- Record an outcome (created, updated, linked, unchanged, skipped); fenced by the run.
UPDATE contact_entity c
   SET status = CASE WHEN c.metadata ? 'recollected' THEN 'pending'::entity_status
                     ELSE $4::entity_status END,
       priority = c.priority OR c.metadata ? 'recollected',
       freeagent_url = coalesce($5, c.freeagent_url),
       payload_hash = coalesce($6, c.payload_hash), last_error = $7,
       metadata = (c.metadata - 'create_intent' - 'adjusted' - 'drift_resolution'
                   - 'recollected') || $8::jsonb,
       attempt_history = fa_jsonb_append_capped(c.attempt_history, $9::jsonb, 25),
       attempts = CASE WHEN $4::text IN ('created', 'updated', 'linked', 'unchanged') THEN 0
                       ELSE c.attempts END,
       next_attempt_at = NULL, claimed_by_run = NULL, processed_at = now(), updated_at = now()
 WHERE c.id = $1 AND c.claimed_by_run = $2 AND c.claim_fence = $3
   AND EXISTS (SELECT 1 FROM profile_run r WHERE r.id = $2 AND r.fence = $3
                                            AND r.status = 'running' FOR SHARE)
RETURNING c.id;

-- name: entity_finish_many
-- entity_finish for several rows ($1 run, $2 fence, $3: [{id, status, url, hash, error, meta,
-- entry}]), after indexing the contacts just created ($4 client, $5: [{url, email,
-- organisation_name, first_name, last_name, status, data, fa_updated_at}], one per url, in url
-- order; often none) as fa_contact_upsert does: one round trip for both.
-- Committed without waiting for the WAL flush (see OUTCOME COMMITS in outcomes.py): run it
-- as a statement of its own, never inside a transaction that writes a create intent.
WITH relaxed AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)),
indexed AS (
    INSERT INTO freeagent_contact (client_id, url, email, organisation_name, first_name,
                                   last_name, status, data, fa_updated_at, seen_at)
    SELECT $4, n.url, n.email, n.organisation_name, n.first_name, n.last_name, n.status,
           n.data, n.fa_updated_at, now()
      FROM jsonb_to_recordset($5::jsonb)
           AS n(url text, email text, organisation_name text, first_name text, last_name text,
                status text, data jsonb, fa_updated_at timestamptz)
    ON CONFLICT (client_id, url) DO UPDATE
       SET email = EXCLUDED.email, organisation_name = EXCLUDED.organisation_name,
           first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
           status = EXCLUDED.status, data = EXCLUDED.data,
           fa_updated_at = EXCLUDED.fa_updated_at, seen_at = now()
)
UPDATE contact_entity c
   SET status = CASE WHEN c.metadata ? 'recollected' THEN 'pending'::entity_status
                     ELSE m.status::entity_status END,
       priority = c.priority OR c.metadata ? 'recollected',
       freeagent_url = coalesce(m.url, c.freeagent_url),
       payload_hash = coalesce(m.hash, c.payload_hash), last_error = m.error,
       metadata = (c.metadata - 'create_intent' - 'adjusted' - 'drift_resolution'
                   - 'recollected') || m.meta,
       attempt_history = fa_jsonb_append_capped(c.attempt_history, m.entry, 25),
       attempts = CASE WHEN m.status IN ('created', 'updated', 'linked', 'unchanged') THEN 0
                       ELSE c.attempts END,
       next_attempt_at = NULL, claimed_by_run = NULL, processed_at = now(), updated_at = now()
  FROM jsonb_to_recordset($3::jsonb)
       AS m(id bigint, status text, url text, hash text, error jsonb, meta jsonb, entry jsonb)
 WHERE c.id = m.id AND c.claimed_by_run = $1 AND c.claim_fence = $2
   AND EXISTS (SELECT 1 FROM relaxed)
   AND EXISTS (SELECT 1 FROM profile_run r WHERE r.id = $1 AND r.fence = $2
                                            AND r.status = 'running' FOR SHARE)
RETURNING c.id;

-- name: entity_fail
-- Record a failed attempt: back to the queue after next_attempt_at, or dead ($4 = 'failed').
-- A record recollected while out for export is not dead: what failed was the older one.
UPDATE contact_entity c
   SET status = CASE WHEN c.metadata ? 'recollected' AND $4::text = 'failed'
                     THEN 'pending'::entity_status ELSE $4::entity_status END,
       priority = c.priority OR (c.metadata ? 'recollected' AND $4::text = 'failed'),
       metadata = CASE WHEN c.metadata ? 'recollected' THEN c.metadata - 'recollected'
                       ELSE c.metadata END,
       last_error = $5, attempts = c.attempts + 1,
       next_attempt_at = CASE WHEN c.metadata ? 'recollected' AND $4::text = 'failed'
                              THEN NULL ELSE $6::timestamptz END,
       attempt_history = fa_jsonb_append_capped(c.attempt_history, $7::jsonb, 25),
       claimed_by_run = NULL, processed_at = now(), updated_at = now()
 WHERE c.id = $1 AND c.claimed_by_run = $2 AND c.claim_fence = $3
   AND EXISTS (SELECT 1 FROM profile_run r WHERE r.id = $2 AND r.fence = $3
                                            AND r.status = 'running' FOR SHARE)
RETURNING c.id;

-- name: entity_customer_ids
-- Registered customers on the ledger (deletion sweep).
SELECT id, magento_customer_id FROM contact_entity
 WHERE profile_id = $1 AND magento_customer_id IS NOT NULL
   AND NOT coalesce((metadata ->> 'deleted_in_magento')::boolean, false);

-- name: entity_mark_deleted
-- The Magento customer is gone: queue the row so the export hides its FreeAgent contact.
UPDATE contact_entity
   SET status = 'pending', attempts = 0, next_attempt_at = NULL, updated_at = now(),
       metadata = metadata || '{"deleted_in_magento": true}'::jsonb
 WHERE id = $1;

-- name: entity_by_customer
-- The ledger row of a registered customer (a webhook reporting it deleted).
SELECT id FROM contact_entity WHERE profile_id = $1 AND magento_customer_id = $2
 ORDER BY id LIMIT 1;

-- name: fa_contact_forget
-- A contact FreeAgent no longer has (we deleted it, or it answered 404/410): out of the index.
DELETE FROM freeagent_contact WHERE client_id = $1 AND url = $2;

-- name: entity_url_live_user
-- Another ledger row (any profile) whose customer is not deleted and that uses this contact.
SELECT id, source_key FROM contact_entity
 WHERE freeagent_url = $1 AND id <> $2
   AND NOT coalesce((metadata ->> 'deleted_in_magento')::boolean, false)
 ORDER BY id LIMIT 1;

-- name: entity_url_owner
-- Which other ledger row of this profile already owns a FreeAgent contact URL.
SELECT id, source_key FROM contact_entity
 WHERE profile_id = $1 AND freeagent_url = $2 AND id <> $3
 ORDER BY id LIMIT 1;

-- name: entity_list
-- Ledger rows for the CLI, filtered by status.
SELECT e.*, p.name AS profile_name
  FROM contact_entity e JOIN profile p ON p.id = e.profile_id
 WHERE ($1::bigint IS NULL OR e.profile_id = $1)
   AND ($2::text IS NULL OR e.status::text = $2)
 ORDER BY e.id
 LIMIT $3;

-- name: entity_retry
-- Re-queue failed (or given) rows for another attempt. Rows of a profile under a dry run are
-- left (it holds them until it ends: entity_retry_held says which), never waited for.
UPDATE contact_entity
   SET status = 'pending', attempts = 0, next_attempt_at = NULL, updated_at = now()
 WHERE ($1::bigint IS NULL OR profile_id = $1)
   AND status::text = coalesce($2, 'failed')
   AND ($3::bigint[] IS NULL OR id = ANY($3))
   AND fa_not_rehearsed(profile_id)
RETURNING id;

-- name: entity_retry_held
-- The rows entity_retry ($1 profile, $2 status, $3 ids) left, by profile: a dry run holds them.
SELECT p.name, count(*)::int AS n
  FROM contact_entity e JOIN profile p ON p.id = e.profile_id
 WHERE ($1::bigint IS NULL OR e.profile_id = $1)
   AND e.status::text = coalesce($2, 'failed')
   AND ($3::bigint[] IS NULL OR e.id = ANY($3))
   AND NOT fa_not_rehearsed(e.profile_id)
 GROUP BY p.name ORDER BY p.name;

-- name: entity_counts
-- Rows per status for one profile.
SELECT status::text, count(*)::int AS n FROM contact_entity WHERE profile_id = $1 GROUP BY status;

-- name: metrics_queue_depth
-- /metrics: ledger rows per profile and status.
SELECT p.name AS profile, c.status::text AS status, count(*)::int AS n
  FROM contact_entity c JOIN profile p ON p.id = c.profile_id
 GROUP BY p.name, c.status;

-- name: entity_get_many
-- Rows by id (dry run, CLI).
SELECT * FROM contact_entity WHERE profile_id = $1 AND ($2::bigint[] IS NULL OR id = ANY($2))
 ORDER BY id LIMIT $3;

-- name: entity_import_links
-- Import: link each e-mail's first unlinked ledger row to the one FreeAgent contact with it,
-- when exactly one has it and no ledger row of the client uses it (several: entity_import_review).
WITH contacts AS (
    SELECT lower(email) AS email, min(url) AS url
      FROM freeagent_contact
     WHERE client_id = $2 AND email IS NOT NULL AND btrim(email) <> ''
     GROUP BY lower(email)
    HAVING count(*) = 1
), rows AS (
    SELECT DISTINCT ON (lower(e.email)) e.id, c.url
      FROM contact_entity e JOIN contacts c ON c.email = lower(e.email)
     WHERE e.profile_id = $1 AND e.freeagent_url IS NULL
       AND e.status NOT IN ('processing', 'creating', 'needs_review')
       AND NOT EXISTS (SELECT 1 FROM contact_entity o JOIN profile op ON op.id = o.profile_id
                        WHERE op.client_id = $2 AND o.freeagent_url = c.url)
     ORDER BY lower(e.email), e.id
)
UPDATE contact_entity e
   SET freeagent_url = rows.url,
       status = CASE WHEN e.status = 'pending' THEN 'pending'::entity_status
                     ELSE 'linked'::entity_status END,
       metadata = e.metadata || '{"linked_by": "import"}'::jsonb, updated_at = now()
  FROM rows
 WHERE e.id = rows.id
RETURNING e.id;

-- name: entity_import_review
-- Import: unlinked rows whose e-mail several FreeAgent contacts carry wait for a person
-- ($3: when), with the candidates; import never guesses between them.
WITH contacts AS (
    SELECT lower(email) AS email,
           jsonb_agg(jsonb_build_object(
               'url', url, 'email', email, 'status', status,
               'name', concat_ws(' / ', nullif(concat_ws(' ', first_name, last_name), ''),
                                 organisation_name))
               ORDER BY url) AS candidates
      FROM freeagent_contact
     WHERE client_id = $2 AND email IS NOT NULL AND btrim(email) <> ''
     GROUP BY lower(email)
    HAVING count(*) > 1
)
UPDATE contact_entity e
   SET status = 'needs_review', next_attempt_at = NULL, updated_at = now(),
       last_error = jsonb_build_object('reason', 'several FreeAgent contacts have this e-mail'),
       metadata = e.metadata || jsonb_build_object('review', jsonb_build_object(
           'reason', jsonb_array_length(c.candidates) || ' FreeAgent contacts have e-mail '
                     || c.email || ': a person decides',
           'candidates', c.candidates, 'at', $3::timestamptz, 'by', 'import'))
  FROM contacts c
 WHERE e.profile_id = $1 AND e.freeagent_url IS NULL AND lower(e.email) = c.email
   AND e.status NOT IN ('processing', 'creating')
RETURNING e.id, e.source_key, e.email;

-- ============================================================================ matching

-- name: entity_same_email
-- The profile's other ledger rows with this e-mail (identity: who a row shares a contact with).
-- The one-row form of match_inputs_many's 'peer' rows (tests compare the two).
SELECT * FROM contact_entity
 WHERE profile_id = $1 AND lower(email) = lower($2) AND id <> $3
 ORDER BY id;

-- name: match_inputs_many
-- What matching needs for several rows at once ($2 ids, $3 profiles, $4 e-mails of the ledger
-- rows, $5 e-mails as sent; NULL: not looked up): 'peer' rows of the row's profile with its
-- e-mail, 'contact' FreeAgent contacts of client $1 with the sent e-mail (c_* columns), and
-- 'owner' rows (any profile of the client) that use one of those contacts. One round trip for
-- a group of decisions (match.py: MatchInputs.gather_many); the caller orders each kind.
WITH asked AS (
    SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[])
                  AS a(asked, profile_id, row_email, sent_email)
), found AS (
    SELECT a.asked, f.url, f.email, f.status, f.data, f.fa_updated_at
      FROM asked a JOIN freeagent_contact f
        ON f.client_id = $1 AND lower(f.email) = lower(a.sent_email)
)
SELECT a.asked, 'peer' AS kind, e.*, NULL::text AS c_url, NULL::text AS c_email,
       NULL::text AS c_status, NULL::jsonb AS c_data, NULL::timestamptz AS c_updated_at
  FROM asked a JOIN contact_entity e
    ON e.profile_id = a.profile_id AND lower(e.email) = lower(a.row_email) AND e.id <> a.asked
UNION ALL
SELECT f.asked, 'owner', e.*, f.url, NULL, NULL, NULL, NULL
  FROM found f JOIN contact_entity e ON e.freeagent_url = f.url
  JOIN profile p ON p.id = e.profile_id AND p.client_id = $1
UNION ALL
SELECT f.asked, 'contact', (NULL::contact_entity).*, f.url, f.email, f.status, f.data,
       f.fa_updated_at
  FROM found f;

-- name: entity_url_owners
-- Ledger rows (every profile of the client) that use these FreeAgent contacts.
SELECT e.* FROM contact_entity e JOIN profile p ON p.id = e.profile_id
 WHERE p.client_id = $1 AND e.freeagent_url = ANY($2::text[])
 ORDER BY e.id;

-- name: entity_needs_review
-- Matching could not decide: the row waits for a person ($4: metadata.review), nothing written.
UPDATE contact_entity c
   SET status = 'needs_review', last_error = $5,
       metadata = (c.metadata - 'create_intent') || jsonb_build_object('review', $4::jsonb),
       attempt_history = fa_jsonb_append_capped(c.attempt_history, $6::jsonb, 25),
       attempts = 0, next_attempt_at = NULL, claimed_by_run = NULL, processed_at = now(),
       updated_at = now()
 WHERE c.id = $1 AND c.claimed_by_run = $2 AND c.claim_fence = $3
   AND EXISTS (SELECT 1 FROM profile_run r WHERE r.id = $2 AND r.fence = $3
                                            AND r.status = 'running' FOR SHARE)
RETURNING c.id;

-- name: entity_review_list
-- Rows waiting for a person (`fa-sync match list`), optionally of one profile.
SELECT e.*, p.name AS profile_name
  FROM contact_entity e JOIN profile p ON p.id = e.profile_id
 WHERE ($1::bigint IS NULL OR e.profile_id = $1) AND e.status = 'needs_review'
 ORDER BY e.id
 LIMIT $2;

-- name: entity_review_get
-- One ledger row with its profile's FreeAgent client, for `fa-sync match link|create`.
SELECT e.*, p.name AS profile_name, p.client_id
  FROM contact_entity e JOIN profile p ON p.id = e.profile_id
 WHERE e.id = $1;

-- name: entity_review_decide
-- A person's decision: the row goes back to the queue with the URL they chose ($2, or NULL
-- for a new contact); what we sent to another contact no longer applies. Never while in flight.
UPDATE contact_entity c
   SET status = 'pending', freeagent_url = $2, payload_hash = NULL, last_error = NULL,
       metadata = (c.metadata - 'shared_with' - 'sent_fields' - 'create_intent')
                  || jsonb_build_object('review', $3::jsonb),
       attempt_history = fa_jsonb_append_capped(c.attempt_history, $4::jsonb, 25),
       attempts = 0, next_attempt_at = NULL, updated_at = now()
 WHERE c.id = $1 AND c.status NOT IN ('processing', 'creating')
RETURNING c.id;

-- name: fa_contact_by_name
-- Indexed contacts whose company ($2) or last name ($3) is this, lower-cased (no e-mail to go by).
SELECT * FROM freeagent_contact
 WHERE client_id = $1
   AND (lower(organisation_name) = $2 OR lower(last_name) = $3)
 ORDER BY fa_updated_at NULLS FIRST, url;

-- ============================================================================ FreeAgent contact index

-- name: fa_contact_upsert
-- Remember a FreeAgent contact seen in a listing or created by us.
INSERT INTO freeagent_contact (client_id, url, email, organisation_name, first_name, last_name,
                               status, data, fa_updated_at, seen_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
ON CONFLICT (client_id, url) DO UPDATE
   SET email = EXCLUDED.email, organisation_name = EXCLUDED.organisation_name,
       first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
       status = EXCLUDED.status, data = EXCLUDED.data, fa_updated_at = EXCLUDED.fa_updated_at,
       seen_at = now();

-- name: fa_contact_get
-- One indexed FreeAgent contact as last listed (drift check).
SELECT data FROM freeagent_contact WHERE client_id = $1 AND url = $2;

-- name: entity_resolve_review
-- A person decided a row waiting for review: queue it with the decision in metadata.
UPDATE contact_entity
   SET status = 'pending', attempts = 0, next_attempt_at = NULL, updated_at = now(),
       metadata = metadata || jsonb_build_object('drift_resolution', $2::text)
 WHERE id = $1 AND status = 'needs_review'
RETURNING id;

-- name: db_now
-- The database clock (stamps compared with seen_at).
SELECT now();

-- name: fa_contact_unseen
-- After a full listing started at $2: the indexed contacts it did not list (deleted in
-- FreeAgent, or skipped while records shifted between pages), to be looked up one by one.
SELECT url FROM freeagent_contact WHERE client_id = $1 AND seen_at < $2 ORDER BY url;

-- name: fa_contact_sweep_state
-- Whether a refresh may sweep the index (never in a dry run's rehearsal: the rows it would
-- delete and the sweep record would be held from other runs until the rehearsal ends), whether
-- one is due (the last over $2 seconds ago, or none), the clock it would start by, and the
-- newest FreeAgent updated_at indexed for the client (where an incremental read starts).
SELECT current_setting('fa_sync.rehearsal', true) IS DISTINCT FROM 'on' AS allowed,
       current_setting('fa_sync.rehearsal', true) IS DISTINCT FROM 'on'
       AND NOT EXISTS (SELECT 1 FROM freeagent_contact_sweep
                        WHERE client_id = $1 AND swept_at > now() - make_interval(secs => $2))
       AS due,
       now() AS now,
       (SELECT max(fa_updated_at) FROM freeagent_contact WHERE client_id = $1) AS mark;

-- name: fa_contact_swept
-- Record a sweep whose listing began at $2 (a later one already recorded is kept).
INSERT INTO freeagent_contact_sweep (client_id, swept_at) VALUES ($1, $2)
ON CONFLICT (client_id) DO UPDATE
   SET swept_at = greatest(freeagent_contact_sweep.swept_at, EXCLUDED.swept_at);

-- name: entity_links_of_client
-- Which ledger row (lowest id, any profile of this FreeAgent client) links each contact.
SELECT e.freeagent_url, min(e.id) AS id
  FROM contact_entity e JOIN profile p ON p.id = e.profile_id
 WHERE p.client_id = $1 AND e.freeagent_url IS NOT NULL AND e.status <> 'deleted'
 GROUP BY e.freeagent_url;

-- name: fa_contact_by_email
-- FreeAgent contacts with this e-mail, oldest first (the one to link to). The one-row form of
-- match_inputs_many's 'contact' rows (tests compare the two).
SELECT * FROM freeagent_contact
 WHERE client_id = $1 AND lower(email) = lower($2)
 ORDER BY fa_updated_at NULLS FIRST, url;

-- name: fa_contact_changed_since
-- Contacts changed at/after a moment, not owned by any ledger row of this client: the
-- candidates for a create whose outcome was unknown (created_at <= updated_at, so a superset).
SELECT f.* FROM freeagent_contact f
 WHERE f.client_id = $1 AND f.fa_updated_at >= $2
   AND NOT EXISTS (SELECT 1 FROM contact_entity e JOIN profile p ON p.id = e.profile_id
                    WHERE p.client_id = $1 AND e.freeagent_url = f.url)
 ORDER BY f.url;

-- name: fa_contact_count
-- How many contacts are indexed for a client.
SELECT count(*)::int FROM freeagent_contact WHERE client_id = $1;

-- name: fa_contact_list
-- Indexed FreeAgent contacts of a client.
SELECT * FROM freeagent_contact WHERE client_id = $1 ORDER BY url;

-- name: fa_contact_data_by_urls
-- FreeAgent's copy of these contacts (dry run: what an update would change).
SELECT url, data FROM freeagent_contact WHERE client_id = $1 AND url = ANY($2::text[]);

-- name: entity_touched_by_run
-- Ledger rows a run recorded an outcome on (their attempt history names the run).
SELECT * FROM contact_entity
 WHERE profile_id = $1
   AND attempt_history @> jsonb_build_array(jsonb_build_object('run_id', $2::bigint))
 ORDER BY id;

-- name: fa_contact_all_emails
-- Every indexed e-mail of a client, for import.
SELECT url, email FROM freeagent_contact WHERE client_id = $1 AND email IS NOT NULL ORDER BY url;

-- ============================================================================ CLI

-- name: client_import_refresh_token
-- Headless set-up: store an existing refresh token; the first use refreshes it.
UPDATE freeagent_client
   SET refresh_token = $2, access_token = NULL, access_token_expires_at = NULL,
       token_version = token_version + 1, updated_at = now()
 WHERE id = $1;

-- ============================================================================ alerts

-- name: alert_raise
-- Raise a condition unless raised within its quiet period; the new alert's id or NULL.
SELECT fa_alert_raise($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10);

-- name: alert_summarise
-- Batch the unsent alerts into a summary message when it is due; its id or NULL.
SELECT fa_alert_summarise($1, $2);

-- name: alert_reauth_unraised
-- Clients whose current token pair FreeAgent refused, not yet alerted for that pair.
SELECT c.id, c.name, a.reason, a.refused_at,
       'reauth_needed:client:' || c.id || ':v' || a.token_version AS dedup_key,
       coalesce((SELECT array_agg(p.name ORDER BY p.name) FROM profile p WHERE p.client_id = c.id),
                '{}') AS profiles
  FROM freeagent_client_reauth a
  JOIN freeagent_client c ON c.id = a.client_id AND c.token_version = a.token_version
 WHERE NOT EXISTS (SELECT 1 FROM alert_dedup d
                    WHERE d.dedup_key = 'reauth_needed:client:' || c.id || ':v' || a.token_version);

-- name: alert_dead_letters
-- Ledger rows a run moved to failed (the dead letter): how many, and the first few.
SELECT count(*) AS n,
       count(*) FILTER (WHERE attempts >= $3) AS exhausted,
       coalesce((array_agg(jsonb_build_object('entity_id', id, 'source_key', source_key,
                                              'attempts', attempts,
                                              'error', last_error ->> 'message') ORDER BY id)
                )[1:5], '{}') AS sample
  FROM contact_entity
 WHERE profile_id = $1 AND status = 'failed'
   AND attempt_history -> -1 ->> 'run_id' = $2;

-- name: alert_message_claim
-- Take due messages for delivery (lease until $1 + $2 s); other replicas skip them.
UPDATE alert_message m SET lease_until = $1 + make_interval(secs => $2)
 WHERE m.id IN (SELECT id FROM alert_message
                 WHERE status = 'pending' AND next_attempt_at <= $1
                   AND (lease_until IS NULL OR lease_until <= $1)
                 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
RETURNING m.id, m.kind, m.created_at, m.delivered, m.attempts;

-- name: alert_message_alerts
-- The alerts a message carries, oldest first.
SELECT id, kind, severity, profile, client, title, details, records, occurrences,
       raised_at, last_raised_at, message_id
  FROM alert WHERE message_id = $1 ORDER BY id;

-- name: alert_message_done
-- Record a delivery attempt: sent, retry at $4, or failed for good (status $5).
UPDATE alert_message
   SET status = $5, delivered = $2, attempts = attempts + 1, last_error = $3,
       next_attempt_at = coalesce($4, next_attempt_at), lease_until = NULL,
       sent_at = CASE WHEN $5 = 'sent' THEN $6::timestamptz END
 WHERE id = $1;

-- name: alert_purge
-- Drop delivered or abandoned messages (and their alerts) and expired quiet periods.
WITH gone AS (DELETE FROM alert_message WHERE status <> 'pending' AND created_at < $1)
DELETE FROM alert_dedup WHERE quiet_until < $1;
