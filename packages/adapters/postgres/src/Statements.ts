/**
 * Every statement the adapter runs, as small functions of the schema name.
 * Writes that append events also NOTIFY `(run id, last seq)` in the same
 * statement, so the hint is sent exactly when the write commits.
 */
import { type Statement, statement } from "./Executor.js"
import {
  MUTABLE_COLUMNS,
  placeholder,
  RUN_COLUMN_NAMES,
  RUN_COLUMNS,
  type RunColumn,
  runColumnList
} from "./RunRows.js"

const NON_TERMINAL = "('queued', 'running', 'awaiting_input')"
const APPEND_SHAPES_PREPARED = 64

const eventArrays = (first: number): string =>
  `unnest($${first}::integer[], $${first + 1}::text[], $${first + 2}::bigint[], $${first + 3}::json[])
     AS e(seq, type, created_at, payload)`

/** An unnamed statement: planned for its actual parameters every time (optional filters). */
const unnamed = (text: string): Statement => ({ name: "", text })

export const makeStatements = (schema: string) => {
  const s = `"${schema}"`
  const runs = `${s}.runs`
  const events = `${s}.events`
  const cols = runColumnList()
  const n = RUN_COLUMN_NAMES.length
  const m = MUTABLE_COLUMNS.length

  // Parameters after the run's columns: $n+1…$n+4 events, $n+5 notify?, $n+6 channel.
  const insertRun = `
    INSERT INTO ${runs} (${cols})
    SELECT ${RUN_COLUMN_NAMES.map((c, i) => placeholder(c, i + 1)).join(", ")}`
  // Events travel as four parallel arrays from parameter `first` on. Not json_to_recordset: it
  // unescapes strings on the way and refuses U+0000, which a json column keeps.
  const insertEventsOf = (from: string, first: number) => `
    INSERT INTO ${events} (run_id, seq, type, created_at, payload)
    SELECT ${from}.id, e.seq, e.type, e.created_at, e.payload
    FROM ${from}, ${eventArrays(first)}`
  const notifyOf = (from: string, seq: string, notify: string, channel: string) => `
    SELECT ${from}.id, CASE WHEN ${notify} THEN pg_notify(${channel}, ${from}.id || ':' || ${seq}) END AS notified
    FROM ${from}`

  // Explicit lists, never `*`: a prepared `SELECT *` breaks on its connection when a later migration adds a column.
  const keyCols = "key_id, customer_id, name, scopes, secret_hash, created_at, expires_at, revoked_at"
  const appendCache = new Map<string, Statement>()

  return {
    /** $1..$n run columns, $n+1…$n+4 events, $n+5 notify, $n+6 channel. Returns a row when created. */
    createRun: statement(
      "create_run",
      `WITH run AS (${insertRun} RETURNING id, last_seq),
       ev AS (${insertEventsOf("run", n + 1)})
       ${notifyOf("run", "run.last_seq", `$${n + 5}::boolean`, `$${n + 6}::text`)}`
    ),

    /**
     * The same, once the (customer, key) row is claimed: inserted, or taking over an expired one.
     * $n+7 customer, $n+8 key, $n+9 fingerprint, $n+10 expires_at, $n+11 now.
     */
    createRunWithKey: statement(
      "create_run_key",
      `WITH idem AS (
         INSERT INTO ${s}.idempotency_keys AS k (customer_id, key, fingerprint, run_id, expires_at)
         VALUES ($${n + 7}::text, $${n + 8}::text, $${n + 9}::text, $1::text, $${n + 10}::bigint)
         ON CONFLICT (customer_id, key) DO UPDATE
           SET fingerprint = EXCLUDED.fingerprint, run_id = EXCLUDED.run_id, expires_at = EXCLUDED.expires_at
           WHERE k.expires_at <= $${n + 11}::bigint
         RETURNING 1
       ),
       run AS (${insertRun} WHERE EXISTS (SELECT 1 FROM idem) RETURNING id, last_seq),
       ev AS (${insertEventsOf("run", n + 1)})
       ${notifyOf("run", "run.last_seq", `$${n + 5}::boolean`, `$${n + 6}::text`)}`
    ),

    /** The live key's record and its run ($1 customer, $2 key). */
    keyedRun: statement(
      "keyed_run",
      `SELECT k.fingerprint AS key_fingerprint, k.run_id AS key_run_id, ${runColumnList("r")}
       FROM ${s}.idempotency_keys k LEFT JOIN ${runs} r ON r.id = k.run_id
       WHERE k.customer_id = $1 AND k.key = $2`
    ),

    /**
     * Compare-and-append for a patch of these columns: $1 id, $2 version, $3 lease token or null,
     * $4 the seq before the first event or null, $5…$8 events, $9 notify?, $10 channel, $11… the values.
     */
    append: (columns: ReadonlyArray<RunColumn>): Statement => {
      const key = columns.join(",")
      let cached = appendCache.get(key)
      if (cached === undefined) {
        // Patches come in the few shapes core's commands make; past this many, a caller is doing something
        // else, and its statements go unprepared rather than piling up on every connection.
        const prepared = appendCache.size < APPEND_SHAPES_PREPARED
        const sets = ["version = version + 1", ...columns.map((c, i) => `${c} = ${placeholder(c, i + 11)}`)]
        cached = statement(
          "append",
          `WITH run AS (
             UPDATE ${runs} SET ${sets.join(", ")}
             WHERE id = $1 AND version = $2
               AND ($3::text IS NULL OR lease_token = $3)
               AND ($4::integer IS NULL OR last_seq = $4)
             RETURNING id, last_seq
           ),
           ev AS (${insertEventsOf("run", 5)})
           ${notifyOf("run", "run.last_seq", "$9::boolean", "$10::text")}`
        )
        if (prepared) appendCache.set(key, cached)
        else cached = unnamed(cached.text)
      }
      return cached
    },

    getRun: statement("get_run", `SELECT ${cols} FROM ${runs} WHERE id = $1`),

    listRuns: unnamed(
      `SELECT ${cols} FROM ${runs}
       WHERE customer_id = $1
         AND ($2::text[] IS NULL OR status = ANY($2::text[]))
         AND ($3::text IS NULL OR handler = $3)
         AND ($4::bigint IS NULL OR created_at >= $4)
         AND ($5::bigint IS NULL OR created_at < $5)
         AND ($6::jsonb IS NULL OR metadata @> $6::jsonb)
         AND ($7::bigint IS NULL OR (created_at, id) < ($7::bigint, $8::text))
       ORDER BY created_at DESC, id DESC
       LIMIT $9`
    ),

    readEvents: statement(
      "read_events",
      `SELECT run_id, seq, type, created_at, payload FROM ${events}
       WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`
    ),

    /** $1 now, $2 handlers, $3 max: locked until the claim's transaction ends; rows others hold are skipped. */
    lockClaimable: statement(
      "lock_claimable",
      `SELECT ${cols} FROM ${runs}
       WHERE claim_at <= $1 AND handler = ANY($2::text[])
       ORDER BY claim_at, id
       LIMIT $3
       FOR UPDATE SKIP LOCKED`
    ),

    /**
     * The common claim in one statement: locks up to $3 claimable runs ($1 now, $2 handlers) as
     * `lockClaimable` does, and starts those that are queued within their deadline exactly as
     * `RunState`'s Claim decides it (`run.started` with the run's attempt and worker $4, lease
     * tokens from $5, lease $6 ms; notify $7, channel $8). One row per started run, or one row of
     * nulls when none; `others` counts the locked runs it left alone (an expired lease, a passed
     * deadline), which the general claim then decides.
     */
    claimQueued: statement(
      "claim_queued",
      `WITH cand AS (
         SELECT id, status, deadline_at FROM ${runs}
         WHERE claim_at <= $1 AND handler = ANY($2::text[])
         ORDER BY claim_at, id
         LIMIT $3
         FOR UPDATE SKIP LOCKED
       ),
       pick AS (
         SELECT id, row_number() OVER () AS n FROM cand
         WHERE status = 'queued' AND (deadline_at IS NULL OR deadline_at > $1)
       ),
       run AS (
         UPDATE ${runs} r SET
           status = 'running',
           worker_id = $4::text,
           started_at = COALESCE(r.started_at, $1),
           deadline_at = COALESCE(r.deadline_at, $1 + (r.limits->>'max_duration_ms')::bigint),
           timer_at = COALESCE(r.deadline_at, $1 + (r.limits->>'max_duration_ms')::bigint),
           last_seq = r.last_seq + 1,
           updated_at = $1,
           version = r.version + 1,
           lease_token = ($5::text[])[p.n],
           lease_expires_at = $1 + $6::bigint,
           available_at = NULL
         FROM pick p WHERE r.id = p.id
         RETURNING ${runColumnList("r")}
       ),
       ev AS (
         INSERT INTO ${events} (run_id, seq, type, created_at, payload)
         SELECT run.id, run.last_seq, 'run.started', $1,
           format('{"redacted":false,"value":{"attempt":%s,"worker_id":%s}}',
             run.usage->>'attempts', to_json($4::text))::json
         FROM run
       )
       SELECT o.others, ${runColumnList("run")},
         CASE WHEN $7::boolean AND run.id IS NOT NULL
           THEN pg_notify($8::text, run.id || ':' || run.last_seq) END AS notified
       FROM (SELECT (count(*) - (SELECT count(*) FROM pick))::integer AS others FROM cand) o
       LEFT JOIN run ON true`
    ),

    /**
     * Writes decided runs in one statement: $1 ids, $2… one array per mutable column; then the
     * events of all of them as run ids + the four event arrays; then notify?, channel.
     */
    writeDecided: statement(
      "write_decided",
      `WITH run AS (
         UPDATE ${runs} r SET ${MUTABLE_COLUMNS.map((c) => `${c} = d.${c}`).join(", ")}
         FROM unnest($1::text[], ${MUTABLE_COLUMNS.map((c, i) => `$${i + 2}::${RUN_COLUMNS[c]}[]`).join(", ")})
           AS d(id, ${MUTABLE_COLUMNS.join(", ")})
         WHERE r.id = d.id
         RETURNING r.id, r.last_seq
       ),
       ev AS (
         INSERT INTO ${events} (run_id, seq, type, created_at, payload)
         SELECT e.run_id, e.seq, e.type, e.created_at, e.payload
         FROM unnest($${m + 2}::text[], $${m + 3}::integer[], $${m + 4}::text[], $${m + 5}::bigint[], $${m + 6}::json[])
           AS e(run_id, seq, type, created_at, payload)
         JOIN run ON run.id = e.run_id
       )
       ${notifyOf("run", "run.last_seq", `$${m + 7}::boolean`, `$${m + 8}::text`)}`
    ),

    /** $1 id, $2 lease token, $3 new expiry. */
    renewLease: statement(
      "renew_lease",
      `UPDATE ${runs} SET lease_expires_at = $3
       WHERE id = $1 AND status = 'running' AND lease_token = $2
       RETURNING ${cols}`
    ),

    /** $1 now, $2 limit: input timeouts and deadlines due, and running runs whose lease expired. */
    dueTimers: statement(
      "due_timers",
      `SELECT ${cols} FROM ${runs} WHERE id IN (
         (SELECT id FROM ${runs} WHERE timer_at <= $1 AND status IN ${NON_TERMINAL} LIMIT $2)
         UNION
         (SELECT id FROM ${runs} WHERE claim_at <= $1 AND status = 'running' LIMIT $2)
       )
       LIMIT $2`
    ),

    /** The feed's re-read: the newest seq of each run ($1 ids). */
    lastSeqs: statement("last_seqs", `SELECT id, last_seq FROM ${runs} WHERE id = ANY($1::text[])`),

    /**
     * Deletes up to $2 idempotency records expired before $1. The outer check matters: a row a
     * create is taking over right now is locked, then live once this statement gets to it.
     */
    purgeExpiredKeys: statement(
      "purge_expired_keys",
      `DELETE FROM ${s}.idempotency_keys WHERE expires_at <= $1 AND (customer_id, key) IN (
         SELECT customer_id, key FROM ${s}.idempotency_keys WHERE expires_at <= $1
         LIMIT $2 FOR UPDATE SKIP LOCKED
       )
       RETURNING 1`
    ),

    rawIdempotency: statement(
      "raw_idempotency",
      `SELECT customer_id, key, fingerprint, run_id, expires_at FROM ${s}.idempotency_keys
       WHERE customer_id = $1 AND key = $2`
    ),

    insertKey: statement(
      "insert_key",
      `INSERT INTO ${s}.api_keys (key_id, customer_id, name, scopes, secret_hash, created_at, expires_at, revoked_at)
       VALUES ($1, $2, $3::json, $4::json, $5, $6, $7, $8)
       ON CONFLICT (key_id) DO NOTHING
       RETURNING key_id`
    ),
    getKey: statement("get_key", `SELECT ${keyCols} FROM ${s}.api_keys WHERE key_id = $1`),
    listKeys: statement(
      "list_keys",
      `SELECT ${keyCols} FROM ${s}.api_keys WHERE customer_id = $1 ORDER BY created_at, key_id`
    ),
    revokeKey: statement(
      "revoke_key",
      `UPDATE ${s}.api_keys SET revoked_at = COALESCE(revoked_at, $3)
       WHERE key_id = $1 AND customer_id = $2
       RETURNING ${keyCols}`
    ),

    ping: statement("ping", "SELECT 1 AS ok")
  }
}

export type Statements = ReturnType<typeof makeStatements>
