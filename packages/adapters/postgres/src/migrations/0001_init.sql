-- Baton schema, version 1. `__SCHEMA__` is replaced by the quoted schema name.
--
-- A run is one row: identity, the projection of its event log, and the lease
-- group. Values the store only carries (input, output, waits, usage…) are
-- `json`, which keeps the client's text exactly (key order, any string);
-- `metadata` is `jsonb` because list filters match it by containment.

CREATE TABLE __SCHEMA__.runs (
  id text PRIMARY KEY,
  customer_id text NOT NULL,
  handler text NOT NULL,
  status text NOT NULL,
  version integer NOT NULL,
  last_seq integer NOT NULL,
  input json NOT NULL,
  metadata jsonb NOT NULL,
  output json NOT NULL,
  error json NOT NULL,
  awaiting_input json NOT NULL,
  limits json NOT NULL,
  usage json NOT NULL,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL,
  started_at bigint,
  finished_at bigint,
  worker_id text,
  open_steps json NOT NULL,
  cancel_requested json NOT NULL,
  last_signal json NOT NULL,
  deadline_at bigint,
  timer_at bigint,
  lease_token text,
  lease_expires_at bigint,
  available_at bigint,
  -- When a claim may take the run: a queued run once available, a running one once its lease expired.
  claim_at bigint GENERATED ALWAYS AS (
    CASE status WHEN 'queued' THEN available_at WHEN 'running' THEN lease_expires_at END
  ) STORED
);

-- Claims: the oldest claimable first, skipping rows other workers hold.
CREATE INDEX runs_claim_idx ON __SCHEMA__.runs (claim_at, id) WHERE claim_at IS NOT NULL;
-- Sweeps: input timeouts and deadlines.
CREATE INDEX runs_timer_idx ON __SCHEMA__.runs (timer_at) WHERE timer_at IS NOT NULL;
-- Listing a customer's runs newest first, with (created_at, id) cursors.
CREATE INDEX runs_customer_created_idx ON __SCHEMA__.runs (customer_id, created_at DESC, id DESC);
CREATE INDEX runs_metadata_idx ON __SCHEMA__.runs USING gin (metadata jsonb_path_ops);

-- The event log: gapless seq per run (the run row's last_seq is the counter).
CREATE TABLE __SCHEMA__.events (
  run_id text NOT NULL REFERENCES __SCHEMA__.runs (id) ON DELETE CASCADE,
  seq integer NOT NULL,
  type text NOT NULL,
  created_at bigint NOT NULL,
  payload json NOT NULL,
  PRIMARY KEY (run_id, seq)
);

-- One row per (customer, idempotency key); an expired row is replaced by the next create.
CREATE TABLE __SCHEMA__.idempotency_keys (
  customer_id text NOT NULL,
  key text NOT NULL,
  fingerprint text NOT NULL,
  run_id text NOT NULL,
  expires_at bigint NOT NULL,
  PRIMARY KEY (customer_id, key)
);
CREATE INDEX idempotency_keys_expires_idx ON __SCHEMA__.idempotency_keys (expires_at);

-- API keys: only the SHA-256 of a secret is stored.
CREATE TABLE __SCHEMA__.api_keys (
  key_id text PRIMARY KEY,
  customer_id text NOT NULL,
  name json NOT NULL,
  scopes json NOT NULL,
  secret_hash text NOT NULL,
  created_at bigint NOT NULL,
  expires_at bigint,
  revoked_at bigint
);
CREATE INDEX api_keys_customer_idx ON __SCHEMA__.api_keys (customer_id, created_at);
