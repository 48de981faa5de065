-- fa-sync schema: the only DDL. Applied idempotently by `fa-sync db migrate` and at daemon start.
-- Every statement here must be safe to run again on a database that already has it.


DO $$ BEGIN
    CREATE TYPE run_status AS ENUM (
        'pending', 'running', 'complete', 'warning', 'error', 'skipped', 'interrupted');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
-- 'interrupted': shutdown cut the run short; its unfinished records resume on the next run.
ALTER TYPE run_status ADD VALUE IF NOT EXISTS 'interrupted';

DO $$ BEGIN
    CREATE TYPE run_trigger AS ENUM ('schedule', 'manual', 'cli');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- 'creating' is the write-ahead intent of a POST (FreeAgent has no idempotency key);
-- 'linked' marks a row resolved to an existing FreeAgent contact without a write;
-- 'unchanged' one whose payload equals the last one FreeAgent accepted (nothing sent).
DO $$ BEGIN
    CREATE TYPE entity_status AS ENUM (
        'pending', 'processing', 'creating', 'created', 'updated', 'linked', 'unchanged',
        'skipped', 'failed', 'needs_review');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
-- 'needs_review': first-run matching found several FreeAgent contacts the row could be (or,
-- with `unmatched: review`, one with its name and no e-mail to tell): nothing is written and
-- exports do not claim it until a person decides (`fa-sync match link|create`).
-- Mirror removals (the Magento customer is gone): 'removed' the row is closed and the contact
-- left as it was (delete_policy none, or a contact another live row still uses); 'hidden' the
-- contact was set Hidden; 'deleted' FreeAgent deleted it. 'needs_review' waits for a person
-- (e.g. a contact edited in FreeAgent under on_drift: review).
ALTER TYPE entity_status ADD VALUE IF NOT EXISTS 'removed';
ALTER TYPE entity_status ADD VALUE IF NOT EXISTS 'hidden';
ALTER TYPE entity_status ADD VALUE IF NOT EXISTS 'deleted';
ALTER TYPE entity_status ADD VALUE IF NOT EXISTS 'needs_review';

-- ---------------------------------------------------------------------------------------------
-- Connections
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS freeagent_client (
    id                        bigserial PRIMARY KEY,
    name                      text NOT NULL UNIQUE
                              CONSTRAINT freeagent_client_name_not_blank CHECK (btrim(name) <> ''),
    environment               text NOT NULL DEFAULT 'sandbox'
                              CONSTRAINT "environment must be production, sandbox or custom"
                              CHECK (environment IN ('production', 'sandbox', 'custom')),
    -- Only for environment = 'custom' (a simulator or proxy); must end with /v2/.
    base_url                  text
                              CONSTRAINT "custom environment needs a base_url ending in /v2/"
                              CHECK ((environment <> 'custom' AND base_url IS NULL)
                                     OR (environment = 'custom' AND base_url ~ '^https?://.+/v2/$')),
    client_id                 text NOT NULL,
    client_secret             text NOT NULL,
    redirect_uri              text NOT NULL DEFAULT 'urn:ietf:wg:oauth:2.0:oob',
    access_token              text,
    access_token_expires_at   timestamptz,
    refresh_token             text,
    refresh_token_expires_at  timestamptz,
    -- Bumped on every token write: a replica holding an older version must not use its pair.
    token_version             bigint NOT NULL DEFAULT 0,
    user_url                  text,
    user_email                text,
    permission_level          integer,
    company_name              text,
    company_subdomain         text,
    rate_limit_per_minute     integer NOT NULL DEFAULT 120
                              CONSTRAINT "rate_limit_per_minute must be between 1 and 120"
                              CHECK (rate_limit_per_minute BETWEEN 1 AND 120),
    rate_limit_per_hour       integer NOT NULL DEFAULT 3600
                              CONSTRAINT "rate_limit_per_hour must be between 1 and 3600"
                              CHECK (rate_limit_per_hour BETWEEN 1 AND 3600),
    -- Sends X-RateLimit-Test: true (sandbox only), which lowers FreeAgent's limit to 5/min.
    rate_limit_test           boolean NOT NULL DEFAULT false,
    config_data               jsonb NOT NULL DEFAULT '{}'::jsonb,
    config_collected_at       timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);

-- A refresh FreeAgent refused (invalid_grant: revoked or expired): `fa-sync client authorize`
-- is needed. It holds for the token_version it was recorded against; a new pair supersedes it.
CREATE TABLE IF NOT EXISTS freeagent_client_reauth (
    client_id      bigint PRIMARY KEY REFERENCES freeagent_client (id) ON DELETE CASCADE,
    token_version  bigint NOT NULL,
    reason         text NOT NULL,
    refused_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS magento_connection (
    id                   bigserial PRIMARY KEY,
    name                 text NOT NULL UNIQUE
                         CONSTRAINT magento_connection_name_not_blank CHECK (btrim(name) <> ''),
    base_url             text NOT NULL
                         CONSTRAINT "base_url must be an http(s) URL"
                         CHECK (base_url ~ '^https?://'),
    store_code           text,
    -- Integration access token, sent as Bearer (needs enable_integration_as_bearer on 2.4.4+)
    -- or used to sign OAuth 1.0a requests when consumer_key/consumer_secret/token_secret are set.
    access_token         text NOT NULL,
    consumer_key         text,
    consumer_secret      text,
    access_token_secret  text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- Profiles
-- ---------------------------------------------------------------------------------------------

-- Structural check of a cron expression (5 fields, or 6 with leading seconds). The daemon
-- validates value ranges again with APScheduler and flags the profile if that fails.
CREATE OR REPLACE FUNCTION fa_cron_is_valid(expr text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT expr IS NOT NULL
       AND array_length(regexp_split_to_array(btrim(expr), '\s+'), 1) IN (5, 6)
       AND NOT EXISTS (
           SELECT 1 FROM unnest(regexp_split_to_array(btrim(expr), '\s+')) AS f(field)
           WHERE field !~* '^(\*|\?|[0-9a-z]+(-[0-9a-z]+)?)(/[0-9]+)?(,(\*|[0-9a-z]+(-[0-9a-z]+)?)(/[0-9]+)?)*$'
       )
$$;

CREATE TABLE IF NOT EXISTS profile (
    id                  bigserial PRIMARY KEY,
    name                text NOT NULL UNIQUE
                        CONSTRAINT "profile name must not be blank" CHECK (btrim(name) <> ''),
    type                text NOT NULL
                        CONSTRAINT "type must be freeagent_contact_export"
                        CHECK (type IN ('freeagent_contact_export')),
    enabled             boolean NOT NULL DEFAULT true,
    schedule            text NOT NULL DEFAULT '*/15 * * * *'
                        CONSTRAINT "schedule must be cron: 5 fields, or 6 with leading seconds"
                        CHECK (fa_cron_is_valid(schedule)),
    timezone            text NOT NULL DEFAULT 'UTC',
    batch_size          integer NOT NULL DEFAULT 100
                        CONSTRAINT "batch_size must be between 1 and 1000"
                        CHECK (batch_size BETWEEN 1 AND 1000),
    retry_enabled       boolean NOT NULL DEFAULT true,
    retry_max_attempts  integer NOT NULL DEFAULT 3
                        CONSTRAINT "retry_max_attempts must be between 1 and 50"
                        CHECK (retry_max_attempts BETWEEN 1 AND 50),
    api_behaviour       text NOT NULL DEFAULT 'upsert'
                        CONSTRAINT "api_behaviour must be upsert, create, update or mirror"
                        CHECK (api_behaviour IN ('upsert', 'create', 'update', 'mirror')),
    -- append: customers updated since the last successful collect; replace: every customer.
    collect_mode        text NOT NULL DEFAULT 'append'
                        CONSTRAINT "collect_mode must be append or replace"
                        CHECK (collect_mode IN ('append', 'replace')),
    collection_size     integer NOT NULL DEFAULT 100
                        CONSTRAINT "collection_size must be between 25 and 100"
                        CHECK (collection_size BETWEEN 25 AND 100),
    history_enabled     boolean NOT NULL DEFAULT true,
    client_id           bigint REFERENCES freeagent_client (id) ON DELETE RESTRICT,
    connection_id       bigint REFERENCES magento_connection (id) ON DELETE RESTRICT,
    settings            jsonb NOT NULL DEFAULT '{}'::jsonb
                        CONSTRAINT "settings must be a JSON object"
                        CHECK (jsonb_typeof(settings) = 'object'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- mirror (upsert + removal of customers deleted in Magento) came after the first release:
-- swap the old constraint on databases created before it. Skipped when the current one is in
-- place, so re-running takes no lock on a live table.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'profile'::regclass
                      AND conname = 'api_behaviour must be upsert, create, update or mirror') THEN
        ALTER TABLE profile
            DROP CONSTRAINT IF EXISTS "api_behaviour must be upsert, create or update",
            ADD CONSTRAINT "api_behaviour must be upsert, create, update or mirror"
                CHECK (api_behaviour IN ('upsert', 'create', 'update', 'mirror'));
    END IF;
END $$;

-- Mutable run-time state kept apart from `profile` so writing it never fires a reload.
CREATE TABLE IF NOT EXISTS profile_state (
    profile_id           bigint PRIMARY KEY REFERENCES profile (id) ON DELETE CASCADE,
    -- Magento updated_at of the newest customer seen by the last successful collect (UTC).
    magento_watermark    timestamptz,
    guest_watermark      timestamptz,
    last_full_collect_at timestamptz,
    -- Set by the daemon when a row passes SQL checks but cannot be scheduled (bad timezone...).
    config_error         text,
    config_error_at      timestamptz
);

-- The breaker: consecutive runs ended by a run-level error (the account, the endpoint, an
-- outage) delay the profile's next scheduled fires exponentially; a successful run deletes it.
CREATE TABLE IF NOT EXISTS profile_breaker (
    profile_id  bigint PRIMARY KEY REFERENCES profile (id) ON DELETE CASCADE,
    failures    integer NOT NULL CHECK (failures > 0),
    open_until  timestamptz NOT NULL,
    reason      text NOT NULL
);

CREATE OR REPLACE FUNCTION fa_profile_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.type IS DISTINCT FROM OLD.type THEN
        RAISE EXCEPTION 'profile %: type cannot be changed after creation (delete the profile and create a new one)', OLD.name
            USING ERRCODE = 'check_violation';
    END IF;
    -- pg_timezone_names reads the whole zone database (tens of ms a row): only when the zone
    -- is new or changed, so updating the schedule of hundreds of profiles stays cheap.
    IF (TG_OP = 'INSERT' OR NEW.timezone IS DISTINCT FROM OLD.timezone)
       AND NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = NEW.timezone) THEN
        RAISE EXCEPTION 'profile %: unknown timezone "%"', NEW.name, NEW.timezone
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS profile_guard ON profile;
CREATE TRIGGER profile_guard BEFORE INSERT OR UPDATE ON profile
    FOR EACH ROW EXECUTE FUNCTION fa_profile_guard();

-- Live reload: every change to a profile row tells listening daemons which profile changed.
CREATE OR REPLACE FUNCTION fa_profile_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fa_sync_profile', COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS profile_notify ON profile;
CREATE TRIGGER profile_notify AFTER INSERT OR UPDATE OR DELETE ON profile
    FOR EACH ROW EXECUTE FUNCTION fa_profile_notify();

-- Append to a JSON array keeping only the newest `cap` entries (bounded attempt history).
CREATE OR REPLACE FUNCTION fa_jsonb_append_capped(arr jsonb, elem jsonb, cap integer)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_agg(e ORDER BY i), '[]'::jsonb)
      FROM (SELECT e, i
              FROM jsonb_array_elements(coalesce(arr, '[]'::jsonb) || jsonb_build_array(elem))
                   WITH ORDINALITY AS t(e, i)
             ORDER BY i DESC LIMIT cap) AS newest
$$;

-- ---------------------------------------------------------------------------------------------
-- Schedule history
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS profile_run (
    id              bigserial PRIMARY KEY,
    profile_id      bigint NOT NULL REFERENCES profile (id) ON DELETE CASCADE,
    trigger         run_trigger NOT NULL,
    scheduled_for   timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz,
    status          run_status NOT NULL DEFAULT 'pending',
    collected       integer NOT NULL DEFAULT 0,
    created         integer NOT NULL DEFAULT 0,
    updated         integer NOT NULL DEFAULT 0,
    skipped         integer NOT NULL DEFAULT 0,
    failed          integer NOT NULL DEFAULT 0,
    linked          integer NOT NULL DEFAULT 0,
    unchanged       integer NOT NULL DEFAULT 0,
    retrying        integer NOT NULL DEFAULT 0,
    -- Rows closed because their Magento customer is gone (removed, hidden or deleted).
    removed         integer NOT NULL DEFAULT 0,
    -- Contacts found edited in FreeAgent since fa-sync last wrote them (on_drift).
    drifted         integer NOT NULL DEFAULT 0,
    -- Rows left for a person: matching could not decide, or drift under on_drift: review.
    needs_review    integer NOT NULL DEFAULT 0,
    error_summary   text,
    messages        jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- Replica that owns the run, and until when; a live owner renews the lease.
    owner           text,
    lease_expires_at timestamptz,
    -- Each claim of a profile gets a new fence; writes carry it so a replica whose lease
    -- expired can no longer change the ledger after another one took over.
    fence           bigint NOT NULL DEFAULT 0,
    -- Each scheduled fire of a profile runs exactly once across replicas.
    CONSTRAINT profile_run_one_per_fire UNIQUE (profile_id, scheduled_for)
);

ALTER TABLE profile_run ADD COLUMN IF NOT EXISTS removed integer NOT NULL DEFAULT 0;
ALTER TABLE profile_run ADD COLUMN IF NOT EXISTS drifted integer NOT NULL DEFAULT 0;
-- Rows a run left for a person (matching or drift review).
ALTER TABLE profile_run ADD COLUMN IF NOT EXISTS needs_review integer NOT NULL DEFAULT 0;

-- Never two runs of one profile at once, whatever replica or CLI started them.
CREATE UNIQUE INDEX IF NOT EXISTS profile_run_one_running
    ON profile_run (profile_id) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS profile_run_profile_started
    ON profile_run (profile_id, scheduled_for DESC);

-- A dry run holds its profile's rehearsal lock (exclusive, until its rolled-back transaction
-- ends); a claim of a fire takes it shared for the claim statement's moment and passes over a
-- profile whose lock it cannot get. Otherwise the claim would meet the rehearsal's uncommitted
-- run row in profile_run_one_running and wait for the rehearsal to end (minutes on a large
-- shop), and with it every other profile's fire claimed in the same statement. Advisory locks
-- of two int keys are apart from the single-key ones of the identity locks.
CREATE OR REPLACE FUNCTION fa_rehearse_profile(p_profile bigint) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(1717654393, (p_profile % 2147483647)::integer)
$$;
CREATE OR REPLACE FUNCTION fa_not_rehearsed(p_profile bigint) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    SELECT pg_try_advisory_xact_lock_shared(1717654393, (p_profile % 2147483647)::integer)
$$;

CREATE SEQUENCE IF NOT EXISTS profile_run_fence;

-- ---------------------------------------------------------------------------------------------
-- The contact ledger: one row per Magento customer (or guest e-mail) per profile
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS contact_entity (
    id                   bigserial PRIMARY KEY,
    profile_id           bigint NOT NULL REFERENCES profile (id) ON DELETE CASCADE,
    -- 'customer:<id>' for registered customers, 'guest:<lower(email)>' for guest buyers.
    source_key           text NOT NULL,
    magento_customer_id  bigint,
    website_id           integer,
    email                text,
    freeagent_url        text,
    status               entity_status NOT NULL DEFAULT 'pending',
    attempts             integer NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz,
    -- FreeAgent's (or our) words for the last failure, as JSON.
    last_error           jsonb,
    -- Every attempt: time, outcome, error. Kept for the dead-letter view.
    attempt_history      jsonb NOT NULL DEFAULT '[]'::jsonb,
    payload_hash         text,
    -- The Magento record as collected; the export builds its payload from this.
    source_data          jsonb NOT NULL DEFAULT '{}'::jsonb,
    metadata             jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Run that holds the row while status is processing/creating, with that run's fence.
    claimed_by_run       bigint,
    claim_fence          bigint,
    collected_at         timestamptz NOT NULL DEFAULT now(),
    processed_at         timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contact_entity_one_per_source UNIQUE (profile_id, source_key)
);

-- The queue: a profile's rows of one status in id order, so a claim reads its batch off the
-- index and stops (contact_entity_due, which ordered by next_attempt_at, made each claim read
-- and sort every pending row: quadratic over a first sync).
DROP INDEX IF EXISTS contact_entity_due;
CREATE INDEX IF NOT EXISTS contact_entity_queue
    ON contact_entity (profile_id, status, id);
CREATE INDEX IF NOT EXISTS contact_entity_email
    ON contact_entity (profile_id, lower(email));
-- Which ledger row owns a FreeAgent contact (reconciling a create skips owned contacts).
CREATE INDEX IF NOT EXISTS contact_entity_url
    ON contact_entity (freeagent_url) WHERE freeagent_url IS NOT NULL;
-- Unsettled creates by person (the identity lock's in-flight check).
CREATE INDEX IF NOT EXISTS contact_entity_creating
    ON contact_entity ((metadata -> 'create_intent' ->> 'identity')) WHERE status = 'creating';

-- Priority lane: rows queued by a Magento event (POST /webhooks/magento) are claimed ahead of
-- the backlog by the run's priority lane; claiming clears the flag.
ALTER TABLE contact_entity ADD COLUMN IF NOT EXISTS priority boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS contact_entity_priority
    ON contact_entity (profile_id, id) WHERE priority;

-- Webhook secret of a Magento connection (sealed like every other secret; daemon/secretbox.py).
CREATE TABLE IF NOT EXISTS magento_webhook (
    id          bigint PRIMARY KEY REFERENCES magento_connection (id) ON DELETE CASCADE,
    secret      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Senders that cannot sign each request (Mageplaza Webhook offers only Basic auth or fixed
-- headers) opt in per connection: auth_kind 'header' (auth_name = the header's name,
-- auth_secret = its value) or 'basic' (auth_name = the user, auth_secret = the password),
-- auth_secret sealed like `secret`. A connection may then have no HMAC secret at all.
ALTER TABLE magento_webhook ADD COLUMN IF NOT EXISTS auth_kind text;
ALTER TABLE magento_webhook ADD COLUMN IF NOT EXISTS auth_name text;
ALTER TABLE magento_webhook ADD COLUMN IF NOT EXISTS auth_secret text;
-- Skipped once in place, so re-running takes no lock on a live table.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'magento_webhook'::regclass
                      AND conname = 'webhook needs a secret; auth is header or basic') THEN
        ALTER TABLE magento_webhook
            ALTER COLUMN secret DROP NOT NULL,
            ADD CONSTRAINT "webhook needs a secret; auth is header or basic" CHECK (
                (secret IS NOT NULL OR auth_kind IS NOT NULL)
                AND (auth_kind IS NULL
                     OR (auth_kind IN ('header', 'basic')
                         AND auth_name IS NOT NULL AND auth_secret IS NOT NULL)));
    END IF;
END $$;

-- Signatures of webhook deliveries already accepted (replay guard, shared by replicas);
-- rows older than the timestamp tolerance are purged as new ones arrive.
CREATE TABLE IF NOT EXISTS webhook_seen (
    signature  text PRIMARY KEY,
    seen_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_seen_at ON webhook_seen (seen_at);

-- FreeAgent contacts seen by `contact collect` / the resolver, per client.
CREATE TABLE IF NOT EXISTS freeagent_contact (
    client_id      bigint NOT NULL REFERENCES freeagent_client (id) ON DELETE CASCADE,
    url            text NOT NULL,
    email          text,
    organisation_name text,
    first_name     text,
    last_name      text,
    status         text,
    data           jsonb NOT NULL,
    fa_updated_at  timestamptz,
    seen_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, url)
);
CREATE INDEX IF NOT EXISTS freeagent_contact_email ON freeagent_contact (client_id, lower(email));

-- When each client's contact index was last swept: a full listing, then every indexed contact
-- it did not list looked up and dropped if FreeAgent no longer has it (resolve.py). Listings
-- with updated_since never report deletions.
CREATE TABLE IF NOT EXISTS freeagent_contact_sweep (
    client_id  bigint PRIMARY KEY REFERENCES freeagent_client (id) ON DELETE CASCADE,
    swept_at   timestamptz NOT NULL
);

-- One person's identity lock, held to the end of the transaction. Not in a dry run's
-- rehearsal (fa_sync.rehearsal on, daemon/db/rehearsal.py), whose one transaction lasts the
-- whole rehearsal and is rolled back: there the lock is waited for (a real run deciding the
-- person commits its intent first, which the rehearsal then sees) and let go at once. Held,
-- it would stop every other profile of the FreeAgent client at that person until the
-- rehearsal ended.
CREATE OR REPLACE FUNCTION fa_identity_lock(p_key bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('fa_sync.rehearsal', true) = 'on' THEN
        PERFORM pg_advisory_lock(p_key);
        PERFORM pg_advisory_unlock(p_key);
    ELSE
        PERFORM pg_advisory_xact_lock(p_key);
    END IF;
END $$;

-- Take the identity locks of these people (advisory, transaction-scoped), in ascending key
-- order: two holders of overlapping sets never wait for each other in a cycle.
CREATE OR REPLACE FUNCTION fa_take_identity_locks(p_keys bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_key bigint;
BEGIN
    FOREACH v_key IN ARRAY (SELECT array_agg(DISTINCT k ORDER BY k) FROM unnest(p_keys) AS k) LOOP
        PERFORM fa_identity_lock(v_key);
    END LOOP;
END $$;

-- The identity locks of several people at one FreeAgent client, in one round trip: bound this
-- transaction's lock waits and idle time, take the locks in ascending key order (two holders of
-- overlapping sets never wait in a cycle), then list the rows whose create of one of these
-- people is unsettled (a fresh snapshot, taken after the locks), newest intent first.
CREATE OR REPLACE FUNCTION fa_identity_locks(
    p_keys bigint[], p_lock_timeout text, p_idle_timeout text, p_client_id bigint
) RETURNS TABLE (id bigint, identity text, intent_at timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('lock_timeout', p_lock_timeout, true),
            set_config('idle_in_transaction_session_timeout', p_idle_timeout, true);
    PERFORM fa_take_identity_locks(p_keys);
    RETURN QUERY
    SELECT e.id, e.metadata -> 'create_intent' ->> 'identity',
           (e.metadata -> 'create_intent' ->> 'at')::timestamptz
      FROM contact_entity e JOIN profile p ON p.id = e.profile_id
     WHERE p.client_id = p_client_id AND e.status = 'creating'
       AND e.metadata -> 'create_intent' ->> 'identity' = ANY (SELECT k::text FROM unnest(p_keys) k)
     ORDER BY 3 DESC;
END $$;

-- Claim a batch of due rows for a run: queries.sql entity_claim_batch says which. Each status
-- is read off contact_entity_queue in id order and the read stops at the batch: a plain index
-- scan, never a bitmap scan and sort of the whole queue, nor a walk of the primary key in id
-- order past every exported row. Over a first sync the planner's statistics lag the ledger
-- (taken when every row was pending, they make that walk look cheap), so the profile and
-- status are a range of the index's own columns, in its order: only that index gives it
-- without a sort, full or incremental (with no statistics at all, the planner walked another
-- index of the profile's rows and sorted each run of one profile: every row, every claim). A
-- plain index scan also marks dead the entries that the row versions of
-- claims, intents and outcomes left behind, which a bitmap scan reads again every time.
CREATE OR REPLACE FUNCTION fa_claim_batch(
    p_profile bigint, p_run bigint, p_fence bigint, p_ids bigint[], p_limit integer,
    p_now timestamptz, p_settle float8
) RETURNS SETOF contact_entity
LANGUAGE plpgsql SET enable_bitmapscan = off SET enable_sort = off
SET enable_incremental_sort = off AS $$
BEGIN
    RETURN QUERY
    WITH due AS (
        SELECT d.id
          FROM unnest('{processing,creating,pending}'::entity_status[]) AS s (status)
         CROSS JOIN LATERAL (
            SELECT e.id FROM contact_entity e
             WHERE (e.profile_id, e.status, e.id) >= (p_profile, s.status, 0)
               AND (e.profile_id, e.status, e.id) <= (p_profile, s.status, 9223372036854775807)
               -- processing and creating rows only once another run held them
               AND (s.status = 'pending' OR e.claimed_by_run IS DISTINCT FROM p_run)
               AND (p_ids IS NULL OR e.id = ANY (p_ids)) AND NOT e.priority
               AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= p_now
                    OR p_ids IS NOT NULL)
               AND (e.metadata -> 'create_intent' IS NULL
                    OR (e.metadata -> 'create_intent' ->> 'at')::timestamptz
                       + make_interval(secs => p_settle) <= p_now)
             ORDER BY e.profile_id, e.status, e.id LIMIT p_limit
             FOR UPDATE OF e SKIP LOCKED
         ) AS d
         LIMIT p_limit
    )
    UPDATE contact_entity c
       SET status = CASE WHEN c.status = 'creating' THEN 'creating'::entity_status
                         ELSE 'processing'::entity_status END,
           metadata = CASE WHEN c.metadata ? 'recollected' THEN c.metadata - 'recollected'
                           ELSE c.metadata END,
           claimed_by_run = p_run, claim_fence = p_fence, updated_at = now()
      FROM due
     WHERE c.id = due.id
    RETURNING c.*;
END $$;

-- The common decision of a first sync in one statement: for rows that would be created if
-- nothing matched them, take their identity locks (as fa_identity_locks), then, each in a fresh
-- snapshot taken after the locks, check that nothing does match (no unsettled create of the
-- person at this client, no other ledger row of the profile with the row's e-mail, no FreeAgent
-- contact of the client with the e-mail sent) and commit the create intent of those rows, fenced
-- by the run as entity_mark_creating_many. Returns each row's outcome: 'marked' (intent
-- committed, the caller POSTs), 'lost' (the run's lease is gone) or 'slow' (something matched:
-- the caller decides it under the locks the long way, create.py). The locks end with the
-- statement: the intent they guarded is committed by then.
CREATE OR REPLACE FUNCTION fa_decide_creates(
    p_client_id bigint, p_run_id bigint, p_fence bigint, p_lock_timeout text,
    p_ids bigint[], p_keys bigint[], p_profiles bigint[], p_row_emails text[],
    p_sent_emails text[], p_marks jsonb
) RETURNS TABLE (id bigint, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    v_free bigint[];
    v_marked bigint[];
BEGIN
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    PERFORM fa_take_identity_locks(p_keys);
    SELECT coalesce(array_agg(a.id), '{}') INTO v_free
      FROM unnest(p_ids, p_keys, p_profiles, p_row_emails, p_sent_emails)
           AS a(id, key, profile_id, row_email, sent_email)
     WHERE NOT EXISTS (
               SELECT 1 FROM contact_entity e JOIN profile p ON p.id = e.profile_id
                WHERE p.client_id = p_client_id AND e.status = 'creating' AND e.id <> a.id
                  AND e.metadata -> 'create_intent' ->> 'identity' = a.key::text)
       AND NOT EXISTS (
               SELECT 1 FROM contact_entity e
                WHERE e.profile_id = a.profile_id AND lower(e.email) = lower(a.row_email)
                  AND e.id <> a.id)
       AND NOT EXISTS (
               -- OFFSET 0: probe the e-mail index once per row; as an anti-join the planner
               -- may hash every contact of the client for each batch (quadratic)
               SELECT 1 FROM freeagent_contact f
                WHERE f.client_id = p_client_id AND lower(f.email) = lower(a.sent_email)
               OFFSET 0);
    WITH marked AS (
        UPDATE contact_entity c
           SET status = 'creating',
               metadata = c.metadata || jsonb_build_object('create_intent', m.intent),
               next_attempt_at = m.next_at, updated_at = now()
          FROM jsonb_to_recordset(p_marks) AS m(id bigint, intent jsonb, next_at timestamptz)
         WHERE c.id = m.id AND m.id = ANY (v_free)
           AND c.claimed_by_run = p_run_id AND c.claim_fence = p_fence
           AND EXISTS (SELECT 1 FROM profile_run r WHERE r.id = p_run_id AND r.fence = p_fence
                                                    AND r.status = 'running' FOR SHARE)
        RETURNING c.id
    )
    SELECT coalesce(array_agg(marked.id), '{}') INTO v_marked FROM marked;
    RETURN QUERY
    SELECT a.id, CASE WHEN a.id = ANY (v_marked) THEN 'marked'
                      WHEN a.id = ANY (v_free) THEN 'lost' ELSE 'slow' END
      FROM unnest(p_ids) AS a(id);
END $$;

-- ---------------------------------------------------------------------------------------------
-- Rate-limit governance: one budget per authorising FreeAgent user, shared by every replica
-- and profile, and one per egress (the address requests leave from: FreeAgent also limits
-- requests per IP address, across users). A log of grants, not fixed windows: our windows
-- cannot be aligned with FreeAgent's; each grant counts until no request of it can share a
-- window with a new one.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS rate_budget (
    budget_key     text PRIMARY KEY,
    blocked_until  timestamptz
);
-- Priority lane: while a priority request waits for a grant, ordinary ones yield until then.
ALTER TABLE rate_budget ADD COLUMN IF NOT EXISTS priority_until timestamptz;
-- Egress rows: the user whose 429 came last and the end of its Retry-After. A 429 of another
-- user before then pauses the whole egress (fa_rate_block).
ALTER TABLE rate_budget ADD COLUMN IF NOT EXISTS refused_key text;
ALTER TABLE rate_budget ADD COLUMN IF NOT EXISTS refused_until timestamptz;

CREATE TABLE IF NOT EXISTS rate_event (
    budget_key  text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_event_key_at ON rate_event (budget_key, at);

-- One row per grant call: n requests granted at `at`. done_at: when the last of them was
-- answered (an upper bound of when FreeAgent received it); NULL while any is unanswered.
ALTER TABLE rate_event ADD COLUMN IF NOT EXISTS id bigserial;
ALTER TABLE rate_event ADD COLUMN IF NOT EXISTS n integer NOT NULL DEFAULT 1;
ALTER TABLE rate_event ADD COLUMN IF NOT EXISTS done_at timestamptz;
CREATE INDEX IF NOT EXISTS rate_event_id ON rate_event (id);
-- The egress the grant also counts against (NULL: none); same rule, minute window only.
ALTER TABLE rate_event ADD COLUMN IF NOT EXISTS egress_key text;
CREATE INDEX IF NOT EXISTS rate_event_egress_at ON rate_event (egress_key, at)
    WHERE egress_key IS NOT NULL;

-- When one more request fits in a full window: the moment enough of the requests counted in
-- it (p_excess + 1 of them, oldest release first) have stopped counting. NULL when the window
-- is not full (p_excess < 0). A grant stops counting at done_at + window when answered, else
-- at + p_lat + window (see fa_rate_take). p_egress: p_key is an egress key, not a user's.
DROP FUNCTION IF EXISTS fa_rate_free_at(
    text, interval, integer, timestamptz, interval, timestamptz);
CREATE OR REPLACE FUNCTION fa_rate_free_at(
    p_key text, p_window interval, p_excess integer, p_horizon timestamptz, p_lat interval,
    p_now timestamptz, p_egress boolean DEFAULT false
) RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- PL/pgSQL, not SQL: each call is planned for its own key, so the one branch that runs
    -- reads its index (an egress key matches every row of the table, to a generic plan).
    RETURN (
        SELECT f FROM (
            SELECT coalesce(done_at, at + p_lat) + p_window AS f,
                   sum(n) OVER (ORDER BY coalesce(done_at, at + p_lat), id) AS upto
              FROM (SELECT id, n, at, done_at FROM rate_event
                     WHERE NOT p_egress AND budget_key = p_key AND at > p_horizon
                    UNION ALL
                    SELECT id, n, at, done_at FROM rate_event
                     WHERE p_egress AND egress_key = p_key AND at > p_horizon) e
             WHERE coalesce(done_at, at + p_lat) > p_now - p_window) w
         WHERE p_excess >= 0 AND upto >= p_excess + 1 ORDER BY upto LIMIT 1);
END $$;

-- Grant up to p_want requests at once (as many as both of the user's windows and the egress's
-- minute allow), after recording the answers of earlier grants (p_done ids answered by
-- p_done_at). A grant counts in a window while FreeAgent may still receive one of its requests
-- inside it: until done_at + window when answered, else until at + p_latency + window
-- (ratelimit.py explains why that is exact). p_egress (NULL: none): the key of the address the
-- requests leave from, shared by every user sending from it, p_egress_per_minute its limit.
-- Rows are locked user first, then egress; holding the egress row this call waits for
-- nothing more, so calls of many users on one egress cannot deadlock.
-- Priority lane (p_priority, Magento events): while a priority call waits for a grant it holds
-- every ordinary caller of the user (and of the egress, when the egress is what it waits
-- for) back until a little after its own turn (priority_until), so the next free request is
-- its; a granted priority call lifts the hold, and the hold lapses on its own if the waiter
-- goes away. p_now: the instant to grant at; NULL (production) means the moment the row locks
-- are obtained, not when the call began waiting for them.
-- Returns (granted, wait, id, at): granted = 0 means wait `wait` seconds.
DROP FUNCTION IF EXISTS fa_rate_take(
    text, integer, integer, integer, double precision, double precision, double precision,
    double precision, bigint[], timestamptz[], timestamptz);
DROP FUNCTION IF EXISTS fa_rate_take(
    text, integer, integer, integer, double precision, double precision, double precision,
    double precision, bigint[], timestamptz[], boolean, timestamptz);
CREATE OR REPLACE FUNCTION fa_rate_take(
    p_key text, p_want integer, p_per_minute integer, p_per_hour integer,
    p_minute_window double precision, p_hour_window double precision,
    p_latency double precision, p_flight double precision,
    p_done bigint[] DEFAULT NULL, p_done_at timestamptz[] DEFAULT NULL,
    p_priority boolean DEFAULT false, p_egress text DEFAULT NULL,
    p_egress_per_minute integer DEFAULT NULL, p_now timestamptz DEFAULT NULL
) RETURNS TABLE (granted integer, wait double precision, grant_id bigint, granted_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_mw        interval := make_interval(secs => p_minute_window);
    v_hw        interval := make_interval(secs => p_hour_window);
    v_lat       interval := make_interval(secs => p_latency);
    v_span      interval := make_interval(secs => greatest(p_flight, p_latency));
    v_now       timestamptz;
    v_blocked   timestamptz;
    v_priority  timestamptz;
    v_minute    integer;
    v_hour      integer;
    v_take      integer;
    v_wait      double precision;
    v_egress    boolean := false;  -- the egress row is locked by this call
    v_full      boolean := false;  -- it is the egress's minute that has no room
    v_id        bigint;
BEGIN
    INSERT INTO rate_budget (budget_key) VALUES (p_key) ON CONFLICT DO NOTHING;
    -- The row lock serialises every sender of this user, across processes.
    SELECT blocked_until, priority_until INTO v_blocked, v_priority
      FROM rate_budget WHERE budget_key = p_key FOR UPDATE;
    v_now := coalesce(p_now, clock_timestamp());
    -- Writes to the user's own rows come before the egress row is locked (no lock waits then).
    IF p_done IS NOT NULL THEN
        UPDATE rate_event e SET done_at = least(d.done_at, e.at + make_interval(secs => p_flight))
          FROM unnest(p_done, p_done_at) AS d(id, done_at)
         WHERE e.id = d.id AND e.budget_key = p_key AND e.done_at IS NULL;
    END IF;
    IF random() < 0.02 THEN
        -- Rows past the hour's horizon count for nobody. The egress's part also takes those of
        -- users that went quiet (nothing else would); SKIP LOCKED: two sweeps never wait on
        -- each other's rows.
        DELETE FROM rate_event WHERE id IN (
            SELECT id FROM rate_event
             WHERE (budget_key = p_key OR egress_key = p_egress) AND at <= v_now - v_hw - v_span
               FOR UPDATE SKIP LOCKED);
    END IF;
    IF v_blocked > v_now THEN
        v_wait := extract(epoch FROM v_blocked - v_now);
    ELSIF v_priority > v_now AND NOT p_priority THEN
        -- A priority request waits: ordinary senders yield until a little after its turn.
        RETURN QUERY SELECT 0, greatest(0.01, extract(epoch FROM v_priority - v_now))::float8,
                            NULL::bigint, NULL::timestamptz;
        RETURN;
    ELSE
        SELECT coalesce(sum(n) FILTER (WHERE coalesce(done_at, at + v_lat) > v_now - v_mw), 0),
               coalesce(sum(n) FILTER (WHERE coalesce(done_at, at + v_lat) > v_now - v_hw), 0)
          INTO v_minute, v_hour
          FROM rate_event WHERE budget_key = p_key AND at > v_now - v_hw - v_span;
        v_take := least(p_want, p_per_minute - v_minute, p_per_hour - v_hour);
        IF v_take <= 0 THEN
            -- Wait until enough counted requests have left each full window for one more.
            v_wait := extract(epoch FROM greatest(v_now,
                fa_rate_free_at(p_key, v_mw, v_minute - p_per_minute, v_now - v_hw - v_span,
                                v_lat, v_now, p_egress => false),
                fa_rate_free_at(p_key, v_hw, v_hour - p_per_hour, v_now - v_hw - v_span,
                                v_lat, v_now, p_egress => false)) - v_now);
            v_wait := greatest(0.01, v_wait);
        ELSIF p_egress IS NOT NULL THEN
            INSERT INTO rate_budget (budget_key) VALUES (p_egress) ON CONFLICT DO NOTHING;
            -- Serialises every sender of every user leaving from this address.
            SELECT blocked_until, priority_until INTO v_blocked, v_priority
              FROM rate_budget WHERE budget_key = p_egress FOR UPDATE;
            v_egress := true;
            -- Granted now, not when the user's count was taken: that count only shrinks.
            v_now := coalesce(p_now, clock_timestamp());
            IF v_blocked > v_now THEN
                v_wait := extract(epoch FROM v_blocked - v_now);
            ELSIF v_priority > v_now AND NOT p_priority THEN
                RETURN QUERY SELECT 0,
                                    greatest(0.01, extract(epoch FROM v_priority - v_now))::float8,
                                    NULL::bigint, NULL::timestamptz;
                RETURN;
            ELSE
                SELECT coalesce(sum(n), 0) INTO v_minute
                  FROM rate_event
                 WHERE egress_key = p_egress AND at > v_now - v_mw - v_span
                   AND coalesce(done_at, at + v_lat) > v_now - v_mw;
                v_take := least(v_take, p_egress_per_minute - v_minute);
                IF v_take <= 0 THEN
                    v_full := true;
                    v_wait := greatest(0.01, extract(epoch FROM greatest(v_now,
                        fa_rate_free_at(p_egress, v_mw, v_minute - p_egress_per_minute,
                                        v_now - v_mw - v_span, v_lat, v_now,
                                        p_egress => true)) - v_now));
                END IF;
            END IF;
        END IF;
    END IF;
    IF p_priority THEN
        UPDATE rate_budget
           SET priority_until = CASE WHEN v_wait > 0
                                     THEN v_now + make_interval(secs => v_wait + 1) END
         WHERE budget_key = p_key;
        IF v_full OR (v_egress AND v_wait IS NULL) THEN
            UPDATE rate_budget
               SET priority_until = CASE WHEN v_full
                                         THEN v_now + make_interval(secs => v_wait + 1) END
             WHERE budget_key = p_egress;
        END IF;
    END IF;
    IF v_wait > 0 THEN
        RETURN QUERY SELECT 0, v_wait, NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
    INSERT INTO rate_event (budget_key, egress_key, at, n)
    VALUES (p_key, p_egress, v_now, v_take) RETURNING id INTO v_id;
    RETURN QUERY SELECT v_take, 0.0::float8, v_id, v_now;
END $$;

-- A 429 for p_key: every sender of the user waits p_seconds. With p_egress, the egress row
-- remembers the user and the end of its wait; a 429 of another user before then pauses every
-- sender of the egress as well (two users refused at once: the address's limit, not a user's,
-- is the likely cause; ratelimit.py says why). Returns whether the egress was paused.
CREATE OR REPLACE FUNCTION fa_rate_block(
    p_key text, p_seconds double precision, p_egress text DEFAULT NULL
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_now    timestamptz := clock_timestamp();
    v_until  timestamptz := clock_timestamp() + make_interval(secs => p_seconds);
    v_pause  boolean;
BEGIN
    INSERT INTO rate_budget (budget_key, blocked_until) VALUES (p_key, v_until)
    ON CONFLICT (budget_key) DO UPDATE
       SET blocked_until = greatest(rate_budget.blocked_until, EXCLUDED.blocked_until);
    IF p_egress IS NULL THEN
        RETURN false;
    END IF;
    INSERT INTO rate_budget (budget_key) VALUES (p_egress) ON CONFLICT DO NOTHING;
    SELECT coalesce(refused_until > v_now AND refused_key <> p_key, false) INTO v_pause
      FROM rate_budget WHERE budget_key = p_egress FOR UPDATE;
    UPDATE rate_budget
       SET refused_key = p_key, refused_until = v_until,
           blocked_until = CASE WHEN v_pause THEN greatest(blocked_until, v_until)
                                ELSE blocked_until END
     WHERE budget_key = p_egress;
    RETURN v_pause;
END $$;

-- One request, never answered, counted for exactly the windows given (callers add their
-- latency allowance): 0 when granted, else seconds to wait. Tests pass explicit instants.
CREATE OR REPLACE FUNCTION fa_rate_acquire(
    p_key text, p_per_minute integer, p_per_hour integer,
    p_minute_window double precision DEFAULT 60, p_hour_window double precision DEFAULT 3600,
    p_now timestamptz DEFAULT NULL
) RETURNS double precision LANGUAGE sql AS $$
    SELECT wait FROM fa_rate_take(p_key, 1, p_per_minute, p_per_hour, p_minute_window,
                                  p_hour_window, 0, 0, p_now => p_now);
$$;

-- fa_rate_acquire in the priority lane.
CREATE OR REPLACE FUNCTION fa_rate_acquire_priority(
    p_key text, p_per_minute integer, p_per_hour integer,
    p_minute_window double precision DEFAULT 60, p_hour_window double precision DEFAULT 3600,
    p_now timestamptz DEFAULT NULL
) RETURNS double precision LANGUAGE sql AS $$
    SELECT wait FROM fa_rate_take(p_key, 1, p_per_minute, p_per_hour, p_minute_window,
                                  p_hour_window, 0, 0, p_priority => true, p_now => p_now);
$$;

-- ---------------------------------------------------------------------------------------------
-- Alerts. A condition (a run ended in error, too many failed records, re-authorisation needed,
-- dead letters) is raised once per quiet period into `alert`; critical ones get their own
-- `alert_message` at once, the rest are batched into a summary message every interval. Every
-- replica shares these tables, so a condition is raised, and a message sent, once.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS alert_message (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('alert', 'summary')),
    created_at       timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'failed')),
    -- Channels that took it already: a retry goes only to the others.
    delivered        text[] NOT NULL DEFAULT '{}',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    -- A replica delivering it holds it until then; after that another one may retry.
    lease_until      timestamptz,
    last_error       text,
    sent_at          timestamptz
);
CREATE INDEX IF NOT EXISTS alert_message_due
    ON alert_message (next_attempt_at) WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS alert (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL
                    CHECK (kind IN ('run_error', 'failure_rate', 'reauth_needed', 'dead_letter')),
    severity        text NOT NULL CHECK (severity IN ('critical', 'warning')),
    -- Condition and subject ('run_error:profile:7'): a repeat within the quiet period is merged.
    dedup_key       text NOT NULL,
    profile         text,
    client          text,
    title           text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Records concerned (failed or dead-lettered), summed over merged repeats.
    records         integer NOT NULL DEFAULT 0,
    occurrences     integer NOT NULL DEFAULT 1,
    raised_at       timestamptz NOT NULL,
    last_raised_at  timestamptz NOT NULL,
    -- NULL: waiting for the next summary.
    message_id      bigint REFERENCES alert_message (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS alert_unbatched ON alert (dedup_key) WHERE message_id IS NULL;
CREATE INDEX IF NOT EXISTS alert_by_message ON alert (message_id);

CREATE TABLE IF NOT EXISTS alert_dedup (
    dedup_key    text PRIMARY KEY,
    -- Repeats are not raised again before this ('infinity': until the condition clears).
    quiet_until  timestamptz NOT NULL,
    suppressed   integer NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS alert_summary (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    next_due_at  timestamptz NOT NULL
);

-- Raise a condition unless it was raised within its quiet period (then merge it into the
-- unsent alert, if any). Returns the new alert's id, or NULL when suppressed. The upsert on
-- alert_dedup serialises replicas raising the same condition at once.
CREATE OR REPLACE FUNCTION fa_alert_raise(
    p_kind text, p_severity text, p_key text, p_profile text, p_client text, p_title text,
    p_details jsonb, p_records integer, p_now timestamptz, p_quiet_until timestamptz
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_message bigint;
    v_id      bigint;
BEGIN
    INSERT INTO alert_dedup (dedup_key, quiet_until) VALUES (p_key, p_quiet_until)
    ON CONFLICT (dedup_key) DO UPDATE SET quiet_until = EXCLUDED.quiet_until, suppressed = 0
     WHERE alert_dedup.quiet_until <= p_now;
    IF NOT FOUND THEN
        UPDATE alert_dedup SET suppressed = suppressed + 1 WHERE dedup_key = p_key;
        UPDATE alert SET occurrences = occurrences + 1, records = records + p_records,
                         last_raised_at = p_now, details = p_details
         WHERE id = (SELECT max(id) FROM alert WHERE dedup_key = p_key AND message_id IS NULL);
        RETURN NULL;
    END IF;
    IF p_severity = 'critical' THEN
        INSERT INTO alert_message (kind, created_at, next_attempt_at)
        VALUES ('alert', p_now, p_now) RETURNING id INTO v_message;
    END IF;
    INSERT INTO alert (kind, severity, dedup_key, profile, client, title, details, records,
                       raised_at, last_raised_at, message_id)
    VALUES (p_kind, p_severity, p_key, p_profile, p_client, p_title, p_details, p_records,
            p_now, p_now, v_message)
    RETURNING id INTO v_id;
    RETURN v_id;
END $$;

-- When the summary is due (one replica wins the row), batch every unsent alert into one
-- message. Returns its id, or NULL when not due or nothing is waiting.
CREATE OR REPLACE FUNCTION fa_alert_summarise(p_now timestamptz, p_interval_seconds double precision)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_message bigint;
BEGIN
    INSERT INTO alert_summary (singleton, next_due_at)
    VALUES (true, p_now + make_interval(secs => p_interval_seconds)) ON CONFLICT DO NOTHING;
    UPDATE alert_summary SET next_due_at = p_now + make_interval(secs => p_interval_seconds)
     WHERE next_due_at <= p_now;
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM alert WHERE message_id IS NULL) THEN
        RETURN NULL;
    END IF;
    INSERT INTO alert_message (kind, created_at, next_attempt_at)
    VALUES ('summary', p_now, p_now) RETURNING id INTO v_message;
    UPDATE alert SET message_id = v_message WHERE message_id IS NULL;
    RETURN v_message;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Which schema.sql was applied last: a daemon starting beside running replicas skips the
-- DDL when the digest matches, because DROP/CREATE TRIGGER and CREATE INDEX lock live tables
-- and deadlock with the replicas' ledger writes.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS fa_sync_schema (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    digest      text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
