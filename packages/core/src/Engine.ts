/**
 * The engine's programs: everything a client (HTTP or in-process) asks of
 * Baton. Each program names the ports it needs in its `R` type; none reads a
 * wall clock (Clock service) or a global.
 */
import { Clock, Data, Effect, Either, Option, Schema, Stream } from "effect"
import {
  ALL_SCOPES,
  type ApiKey,
  type ApiKeyRecord,
  CUSTOMER_ID_PATTERN,
  hashSecret,
  KEY_ID_PATTERN,
  makeKeyId,
  makeSecret,
  type Principal,
  parseKey,
  Scope,
  SECRET_PATTERN,
  secretMatches,
  toPublicKey
} from "./ApiKey.js"
import { EngineConfig } from "./EngineConfig.js"
import {
  AuthError,
  RunConflict,
  type RunNotFound,
  runNotFound,
  type StorageError,
  storageUnavailable,
  type TransitionRejected,
  Unprocessable,
  type ValidationError,
  validationError
} from "./Errors.js"
import { makeLeaseToken, makeRunId } from "./Id.js"
import { checkIdempotencyKey, fingerprint } from "./Idempotency.js"
import { optional } from "./internal/schema.js"
import { decodeInput } from "./internal/validate.js"
import { JsonValue } from "./Json.js"
import { KeyCache } from "./KeyCache.js"
import { LimitsInput, resolveLimits } from "./Limits.js"
import { KeyStore } from "./ports/KeyStore.js"
import { type ListCursor, RunStore } from "./ports/RunStore.js"
import {
  isTerminal,
  Metadata,
  RUN_ID_PATTERN,
  type Run,
  RunId,
  type RunRecord,
  RunStatus,
  toPublicRun
} from "./Run.js"
import { type EventRow, type RunEvent, toRunEvent } from "./RunEvent.js"
import { RunEventReaders } from "./RunEventReaders.js"
import * as RunState from "./RunState.js"
import { SignalRequest, validateSignalInput } from "./Signal.js"

// ---------------------------------------------------------------------------
// shared checks

const requireScope = (principal: Principal, scope: Scope): Effect.Effect<void, AuthError> =>
  principal.scopes.includes(scope)
    ? Effect.void
    : Effect.fail(
        new AuthError({ reason_code: "AUTH_SCOPE_DENIED", message: `This key lacks the ${scope} scope.` })
      )

/** The caller's run, or RunNotFound — for a malformed id, a missing run and another customer's run alike. */
const loadOwnRun = (
  principal: Principal,
  runId: string
): Effect.Effect<RunRecord, RunNotFound | StorageError, RunStore> =>
  typeof runId !== "string" || !RUN_ID_PATTERN.test(runId)
    ? Effect.fail(runNotFound())
    : Effect.flatMap(RunStore, (store) => store.get(runId)).pipe(
        Effect.flatMap((run) =>
          run === null || run.customer_id !== principal.customerId
            ? Effect.fail(runNotFound())
            : Effect.succeed(run)
        )
      )

/** Fails unless `key` is a usable idempotency key; an absent or empty one fails with `whenMissing`. */
const requireUsableKey = (
  key: string | undefined,
  whenMissing: "IDEMPOTENCY_KEY_MISSING" | "IDEMPOTENCY_KEY_INVALID"
): Effect.Effect<void, ValidationError> => {
  const check = checkIdempotencyKey(key)
  if (check._tag === "Valid") return Effect.void
  const [message, code] =
    check._tag === "Invalid"
      ? [check.message, "IDEMPOTENCY_KEY_INVALID" as const]
      : [whenMissing === "IDEMPOTENCY_KEY_MISSING" ? "is required" : "is empty", whenMissing]
  return Effect.fail(validationError([{ path: "idempotency-key", message }], code))
}

// ---------------------------------------------------------------------------
// create

export const HANDLER_NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/

export const CreateRunRequest = Schema.Struct({
  input: JsonValue,
  metadata: optional(Metadata),
  handler: optional(Schema.String.pipe(Schema.pattern(HANDLER_NAME_PATTERN))),
  limits: optional(LimitsInput)
})
export type CreateRunRequest = typeof CreateRunRequest.Type

export type CreateRunResult = Data.TaggedEnum<{
  /** A new run (HTTP 201). */
  Created: { readonly run: Run }
  /** The key was used before with the same body: that run, as it is now (HTTP 200, replayed). */
  Replayed: { readonly run: Run }
  /** The key was used before with another body (HTTP 409 IDEMPOTENCY_KEY_REUSED). */
  KeyReused: { readonly runId: string }
}>
export const CreateRunResult = Data.taggedEnum<CreateRunResult>()

/**
 * Creates a run. With an idempotency key, concurrent and repeated calls with
 * the same body create one run; `requireIdempotencyKey` makes the key mandatory
 * (the HTTP API does so).
 */
export const createRun = (
  principal: Principal,
  body: unknown,
  options: { readonly idempotencyKey?: string | undefined; readonly requireIdempotencyKey?: boolean } = {}
): Effect.Effect<
  CreateRunResult,
  ValidationError | Unprocessable | AuthError | StorageError,
  RunStore | EngineConfig
> =>
  Effect.gen(function* () {
    yield* requireScope(principal, "runs:write")
    const key = options.idempotencyKey
    if (key !== undefined || options.requireIdempotencyKey === true)
      yield* requireUsableKey(key, "IDEMPOTENCY_KEY_MISSING")
    const request = yield* decodeInput(CreateRunRequest)(body)
    const config = yield* EngineConfig
    const handler = request.handler ?? "default"
    if (config.handlers !== null && !config.handlers.has(handler))
      return yield* Effect.fail(
        new Unprocessable({
          reason_code: "HANDLER_NOT_FOUND",
          message: `No handler named ${handler} is registered.`,
          details: [{ path: "handler", message: "is not a registered handler" }]
        })
      )
    const now = yield* Clock.currentTimeMillis
    const { record, events } = RunState.create(
      {
        id: makeRunId(now),
        customerId: principal.customerId,
        handler,
        input: request.input,
        metadata: request.metadata ?? {},
        limits: resolveLimits(request.limits, config.defaultLimits)
      },
      { now, redaction: config.redaction }
    )
    // The fingerprint covers the request as understood, defaults applied, so
    // `{input}` and `{input, handler: "default"}` are the same request.
    const normalized = {
      input: request.input,
      handler,
      metadata: request.metadata ?? {},
      limits: request.limits ?? {}
    }
    const store = yield* RunStore
    const result = yield* store.create({
      run: record,
      events,
      idempotency:
        key === undefined
          ? null
          : {
              customer_id: principal.customerId,
              key,
              fingerprint: fingerprint(normalized),
              run_id: record.id,
              expires_at: now + config.idempotencyTtlMs
            },
      now
    })
    switch (result._tag) {
      case "Created":
        return CreateRunResult.Created({ run: toPublicRun(result.run) })
      case "Replayed":
        return CreateRunResult.Replayed({ run: toPublicRun(result.run) })
      case "KeyReused":
        return CreateRunResult.KeyReused({ runId: result.runId })
    }
  })

// ---------------------------------------------------------------------------
// read

export const getRun = (
  principal: Principal,
  runId: string
): Effect.Effect<Run, RunNotFound | AuthError | StorageError, RunStore> =>
  requireScope(principal, "runs:read").pipe(
    Effect.zipRight(loadOwnRun(principal, runId)),
    Effect.map(toPublicRun)
  )

const IsoDate = Schema.String.pipe(
  Schema.filter((s) => !Number.isNaN(Date.parse(s)) || "an ISO 8601 date-time", { identifier: "IsoDateTime" })
)

export const ListRunsQuery = Schema.Struct({
  status: optional(Schema.Array(RunStatus)),
  handler: optional(Schema.String.pipe(Schema.pattern(HANDLER_NAME_PATTERN))),
  created_after: optional(IsoDate),
  created_before: optional(IsoDate),
  metadata: optional(Metadata),
  limit: optional(Schema.Int.pipe(Schema.between(1, 100))),
  cursor: optional(Schema.String.pipe(Schema.maxLength(512)))
})
export type ListRunsQuery = typeof ListRunsQuery.Type

export interface RunPage {
  readonly data: ReadonlyArray<Run>
  readonly has_more: boolean
  readonly next_cursor: string | null
}

// Only what the API itself encodes: stores compare these as typed columns.
const CursorPayload = Schema.parseJson(
  Schema.Struct({ c: Schema.Int.pipe(Schema.between(0, 8.64e15)), i: RunId })
)
const encodeCursor = (run: RunRecord): string =>
  Buffer.from(JSON.stringify({ c: run.created_at, i: run.id }), "utf8").toString("base64url")
const decodeCursor = (cursor: string): Effect.Effect<ListCursor, ValidationError> =>
  Effect.try(() => Buffer.from(cursor, "base64url").toString("utf8")).pipe(
    Effect.flatMap((text) => Schema.decodeUnknown(CursorPayload)(text)),
    Effect.map((p) => ({ createdAt: p.c, id: p.i })),
    Effect.mapError(() => validationError([{ path: "cursor", message: "is not a cursor this API returned" }]))
  )

/** The caller's runs, newest first; a cursor resumes after the last run of a page, stable under inserts. */
export const listRuns = (
  principal: Principal,
  query: unknown
): Effect.Effect<RunPage, ValidationError | AuthError | StorageError, RunStore> =>
  Effect.gen(function* () {
    yield* requireScope(principal, "runs:read")
    const q = yield* decodeInput(ListRunsQuery)(query)
    const limit = q.limit ?? 20
    const cursor = q.cursor === undefined ? null : yield* decodeCursor(q.cursor)
    const store = yield* RunStore
    const page = yield* store.list(
      {
        customerId: principal.customerId,
        ...(q.status === undefined ? {} : { status: q.status }),
        ...(q.handler === undefined ? {} : { handler: q.handler }),
        ...(q.created_after === undefined ? {} : { createdAfter: Date.parse(q.created_after) }),
        ...(q.created_before === undefined ? {} : { createdBefore: Date.parse(q.created_before) }),
        ...(q.metadata === undefined ? {} : { metadata: q.metadata })
      },
      cursor,
      limit
    )
    const last = page.runs.at(-1)
    return {
      data: page.runs.map(toPublicRun),
      has_more: page.hasMore,
      next_cursor: page.hasMore && last !== undefined ? encodeCursor(last) : null
    }
  })

export const ReadEventsQuery = Schema.Struct({
  after_seq: optional(Schema.Int.pipe(Schema.nonNegative())),
  limit: optional(Schema.Int.pipe(Schema.between(1, 1000)))
})

export interface EventPage {
  readonly data: ReadonlyArray<RunEvent>
  readonly has_more: boolean
  readonly next_after_seq: number
}

export const readEvents = (
  principal: Principal,
  runId: string,
  query: unknown = {}
): Effect.Effect<EventPage, ValidationError | RunNotFound | AuthError | StorageError, RunStore> =>
  Effect.gen(function* () {
    yield* requireScope(principal, "runs:read")
    const q = yield* decodeInput(ReadEventsQuery)(query)
    const run = yield* loadOwnRun(principal, runId)
    const after = q.after_seq ?? 0
    const limit = q.limit ?? 100
    const store = yield* RunStore
    const rows = yield* store.readEvents(run.id, after, limit + 1)
    const page = rows.slice(0, limit)
    return {
      data: page.map(toRunEvent),
      has_more: rows.length > limit,
      next_after_seq: page.at(-1)?.seq ?? after
    }
  })

export interface SubscriptionStart {
  readonly runId: string
  readonly afterSeq: number
}

/**
 * The checks before a subscription's first event (scope, after_seq,
 * ownership): where it starts, or null when there is nothing to stream (a
 * finished run read to its end).
 */
export const startSubscription = (
  principal: Principal,
  runId: string,
  afterSeq = 0
): Effect.Effect<
  SubscriptionStart | null,
  ValidationError | RunNotFound | AuthError | StorageError,
  RunStore
> =>
  Effect.gen(function* () {
    yield* requireScope(principal, "runs:read")
    if (!Number.isInteger(afterSeq) || afterSeq < 0)
      return yield* Effect.fail(
        validationError([{ path: "after_seq", message: "is a non-negative integer" }])
      )
    const run = yield* loadOwnRun(principal, runId)
    if (isTerminal(run.status) && afterSeq >= run.last_seq) return null
    // Past the last event of a live run nothing could ever be emitted contiguously: it would never end.
    if (afterSeq > run.last_seq)
      return yield* Effect.fail(
        validationError([{ path: "after_seq", message: `is past the run's last event (${run.last_seq})` }])
      )
    return { runId: run.id, afterSeq }
  })

/**
 * The run's events after `afterSeq`, then live ones, ending after the terminal
 * event. Every subscriber of a run in this process shares one log reader
 * (RunEventReaders): no gap, no repeat, one store read per hint however many
 * subscribe.
 */
export const subscribe = (
  principal: Principal,
  runId: string,
  afterSeq = 0
): Effect.Effect<
  Stream.Stream<RunEvent, StorageError, RunEventReaders>,
  ValidationError | RunNotFound | AuthError | StorageError,
  RunStore
> =>
  Effect.map(startSubscription(principal, runId, afterSeq), (start) =>
    start === null
      ? Stream.empty
      : Stream.unwrap(Effect.map(RunEventReaders, (readers) => readers.follow(start.runId, start.afterSeq)))
  )

// ---------------------------------------------------------------------------
// write: apply a command with compare-and-append

export interface Applied {
  readonly decision: RunState.Decision
  readonly run: RunRecord
}

/**
 * Reads the run, decides with RunState, appends with compare-and-set, and on
 * a conflict reads again and decides again. `leaseToken` fences a worker's
 * writes; API writes pass null.
 */
export const applyCommand = (
  runId: string,
  command: RunState.RunCommand,
  options: { readonly leaseToken?: string | null; readonly initial?: RunRecord } = {}
): Effect.Effect<Applied, RunNotFound | TransitionRejected | StorageError, RunStore | EngineConfig> =>
  applyCommands(runId, [command], options)

/**
 * Several commands as ONE append: each is decided on the run as the ones before
 * it left it, their events are written together (seqs in order) under one
 * version bump. Decided no further once the run stops running (it ended or was
 * suspended: what follows is moot). A command refused after the first is
 * refused after the commands before it are written, as separate writes would
 * be; a refused command that `skipRejected` names is left out instead.
 */
export const applyCommands = (
  runId: string,
  commands: ReadonlyArray<RunState.RunCommand>,
  options: {
    readonly leaseToken?: string | null
    readonly initial?: RunRecord
    readonly skipRejected?: (command: RunState.RunCommand) => boolean
  } = {}
): Effect.Effect<Applied, RunNotFound | TransitionRejected | StorageError, RunStore | EngineConfig> =>
  Effect.gen(function* () {
    const store = yield* RunStore
    const config = yield* EngineConfig
    let current: RunRecord | null = options.initial ?? (yield* store.get(runId))
    for (let attempt = 0; attempt < config.maxAppendAttempts; attempt++) {
      if (current === null) return yield* Effect.fail(runNotFound())
      const now = yield* Clock.currentTimeMillis
      const ctx = { now, redaction: config.redaction }
      let run = current
      const events: EventRow[] = []
      let rejected: TransitionRejected | null = null
      for (const command of commands) {
        const decided = RunState.transition(run, command, ctx)
        if (Either.isLeft(decided)) {
          if (options.skipRejected?.(command) === true) continue
          rejected = decided.left
          break
        }
        if (decided.right._tag === "NoChange") continue
        run = decided.right.next
        events.push(...decided.right.events)
        if (run.status !== "running") break
      }
      if (events.length === 0) {
        if (rejected !== null) return yield* Effect.fail(rejected)
        return { decision: { _tag: "NoChange", run: current }, run: current }
      }
      const next: RunRecord = { ...run, version: current.version + 1 }
      const patch = RunState.patchBetween(current, next)
      const result = yield* store.append(
        runId,
        { version: current.version, leaseToken: options.leaseToken ?? null },
        events,
        patch
      )
      if (result._tag === "Appended") {
        if (rejected !== null) return yield* Effect.fail(rejected)
        return { decision: { _tag: "Transition", events, patch, next }, run: next }
      }
      current = yield* store.get(runId)
    }
    return yield* Effect.fail(storageUnavailable("The run is changing too fast; try again.", 100))
  })

/** What `command` would do to `run` now, without writing it (a worker's preview of its own write). */
export const decideCommand = (
  run: RunRecord,
  command: RunState.RunCommand
): Effect.Effect<Either.Either<RunState.Decision, TransitionRejected>, never, EngineConfig> =>
  Effect.map(Effect.zip(EngineConfig, Clock.currentTimeMillis), ([config, now]) =>
    RunState.transition(run, command, { now, redaction: config.redaction })
  )

const toApiConflict = (e: TransitionRejected): RunConflict | Unprocessable | TransitionRejected => {
  switch (e.reason_code) {
    case "RUN_ALREADY_TERMINAL":
    case "RUN_NOT_AWAITING_INPUT":
    case "IDEMPOTENCY_KEY_REUSED":
      return new RunConflict({ reason_code: e.reason_code, message: e.message })
    case "SIGNAL_INPUT_INVALID":
      return new Unprocessable({
        reason_code: "SIGNAL_INPUT_INVALID",
        message: e.message,
        details: [{ path: "action", message: e.message }]
      })
    default:
      return e
  }
}

/** Answers a wait for input. A repeat of the signal that answered the latest wait is a no-op. */
export const signalRun = (
  principal: Principal,
  runId: string,
  body: unknown,
  options: { readonly idempotencyKey?: string | undefined } = {}
): Effect.Effect<
  Run,
  ValidationError | RunNotFound | RunConflict | Unprocessable | AuthError | TransitionRejected | StorageError,
  RunStore | EngineConfig
> =>
  Effect.gen(function* () {
    yield* requireScope(principal, "runs:signal")
    const key = options.idempotencyKey
    // An optional key that was sent must be usable: an empty one is invalid, not missing.
    if (key !== undefined) yield* requireUsableKey(key, "IDEMPOTENCY_KEY_INVALID")
    const request = yield* decodeInput(SignalRequest)(body)
    const run = yield* loadOwnRun(principal, runId)
    const schema = run.awaiting_input?.input_schema
    if (run.status === "awaiting_input" && schema !== undefined && request.action === "submit_input") {
      const details = validateSignalInput(schema, request.input)
      if (details.length > 0)
        return yield* Effect.fail(
          new Unprocessable({
            reason_code: "SIGNAL_INPUT_INVALID",
            message: "The input does not match the wait's input_schema.",
            details
          })
        )
    }
    const command = RunState.RunCommand.Signal(
      key === undefined ? request : { ...request, idempotencyKey: key }
    )
    const applied = yield* applyCommand(run.id, command, { initial: run }).pipe(
      Effect.mapError((e) => (e._tag === "TransitionRejected" ? toApiConflict(e) : e))
    )
    // The wait had timed out: the signal recorded that ending instead of answering it.
    if (applied.decision._tag === "Transition" && applied.run.status === "limit_exceeded")
      return yield* Effect.fail(
        new RunConflict({ reason_code: "RUN_ALREADY_TERMINAL", message: "The wait for input timed out." })
      )
    return toPublicRun(applied.run)
  })

export const CancelRequest = Schema.Struct({ reason: optional(Schema.String.pipe(Schema.maxLength(1000))) })

/** Cancels a run: at once when no worker holds it, else by asking its worker. Repeating it is a no-op. */
export const cancelRun = (
  principal: Principal,
  runId: string,
  body: unknown = {}
): Effect.Effect<
  Run,
  ValidationError | RunNotFound | RunConflict | Unprocessable | AuthError | TransitionRejected | StorageError,
  RunStore | EngineConfig
> =>
  Effect.gen(function* () {
    yield* requireScope(principal, "runs:write")
    const request = yield* decodeInput(CancelRequest)(body ?? {})
    const run = yield* loadOwnRun(principal, runId)
    const applied = yield* applyCommand(run.id, RunState.RunCommand.RequestCancel(request), {
      initial: run
    }).pipe(Effect.mapError((e) => (e._tag === "TransitionRejected" ? toApiConflict(e) : e)))
    return toPublicRun(applied.run)
  })

// ---------------------------------------------------------------------------
// workers and sweeps

/** Claims up to `max` runs of the configured handlers for `workerId`. */
export const ClaimOptions = Schema.Struct({
  workerId: Schema.String.pipe(Schema.pattern(/^[\x21-\x7e]{1,200}$/)),
  leaseMs: Schema.Int.pipe(Schema.between(1, 24 * 3600 * 1000)),
  max: Schema.Int.pipe(Schema.between(1, 1000)),
  handlers: optional(Schema.Array(Schema.String.pipe(Schema.pattern(HANDLER_NAME_PATTERN))))
})

export const claimRuns = (
  workerId: string,
  options: { readonly leaseMs: number; readonly max: number; readonly handlers?: ReadonlyArray<string> }
): Effect.Effect<ReadonlyArray<RunRecord>, ValidationError | StorageError, RunStore | EngineConfig> =>
  Effect.gen(function* () {
    yield* decodeInput(ClaimOptions)({ workerId, ...options })
    const config = yield* EngineConfig
    const handlers = options.handlers ?? (config.handlers === null ? [] : [...config.handlers])
    if (handlers.length === 0 || options.max <= 0) return []
    const store = yield* RunStore
    const now = yield* Clock.currentTimeMillis
    return yield* store.claim({ workerId, handlers, leaseMs: options.leaseMs, max: options.max, now })
  })

/**
 * Fires due timers (input timeouts, deadlines) and requeues runs whose lease
 * expired. Returns how many runs changed. Safe to run on every process at once.
 */
export const sweep = (
  limit = 100
): Effect.Effect<number, ValidationError | StorageError, RunStore | EngineConfig> =>
  Effect.gen(function* () {
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
      return yield* Effect.fail(
        validationError([{ path: "limit", message: "is an integer from 1 to 10000" }])
      )
    const store = yield* RunStore
    const now = yield* Clock.currentTimeMillis
    const due = yield* store.dueTimers(now, limit)
    let changed = 0
    for (const run of due) {
      const result = yield* Effect.either(applyCommand(run.id, RunState.RunCommand.Tick(), { initial: run }))
      if (Either.isRight(result) && result.right.decision._tag === "Transition") changed++
      else if (Either.isLeft(result) && result.left._tag === "StorageError")
        return yield* Effect.fail(result.left)
    }
    return changed
  })

/**
 * Extends a lease to now + leaseMs (0 ends it now: the next claim anywhere
 * resumes the run); the run, or null when the lease is lost.
 */
export const renewLease = (
  runId: string,
  leaseToken: string,
  leaseMs: number
): Effect.Effect<RunRecord | null, StorageError, RunStore> =>
  Effect.flatMap(Effect.zip(RunStore, Clock.currentTimeMillis), ([store, now]) =>
    store.renewLease(runId, leaseToken, leaseMs, now)
  )

/** A fresh fencing token; exported for adapters that mint them in core's style. */
export const newLeaseToken = makeLeaseToken

// ---------------------------------------------------------------------------
// API keys

export const IssueKeyRequest = Schema.Struct({
  name: optional(Schema.String.pipe(Schema.maxLength(200))),
  scopes: Schema.Array(Scope).pipe(Schema.minItems(1), Schema.maxItems(16)),
  customer_id: optional(Schema.String.pipe(Schema.pattern(CUSTOMER_ID_PATTERN))),
  expires_at: optional(IsoDate.pipe(Schema.maxLength(64)))
})

export interface IssuedKey extends ApiKey {
  /** `key_id:secret`, shown once. */
  readonly key: string
}

const insertKey = (record: ApiKeyRecord): Effect.Effect<void, StorageError, KeyStore> =>
  Effect.flatMap(KeyStore, (keys) => keys.insert(record)).pipe(
    Effect.flatMap((inserted) =>
      inserted ? Effect.void : Effect.fail(storageUnavailable("A key id collided; try again.", 0))
    )
  )

/**
 * Issues a key. Needs `keys:admin`; a key never grants scopes its issuer lacks,
 * and only the operator customer's admins issue keys for other customers.
 */
export const issueKey = (
  principal: Principal,
  body: unknown
): Effect.Effect<IssuedKey, ValidationError | AuthError | StorageError, KeyStore | EngineConfig> =>
  Effect.gen(function* () {
    yield* requireScope(principal, "keys:admin")
    const request = yield* decodeInput(IssueKeyRequest)(body)
    const config = yield* EngineConfig
    const customerId = request.customer_id ?? principal.customerId
    if (customerId !== principal.customerId && principal.customerId !== config.operatorCustomerId)
      return yield* Effect.fail(
        new AuthError({
          reason_code: "AUTH_SCOPE_DENIED",
          message: "Only the operator issues keys for other customers."
        })
      )
    const extra = request.scopes.filter((s) => !principal.scopes.includes(s))
    if (extra.length > 0)
      return yield* Effect.fail(
        new AuthError({
          reason_code: "AUTH_SCOPE_DENIED",
          message: `A key cannot grant scopes it lacks: ${extra.join(", ")}.`
        })
      )
    const now = yield* Clock.currentTimeMillis
    const expiresAt = request.expires_at === undefined ? null : Date.parse(request.expires_at)
    if (expiresAt !== null && expiresAt <= now)
      return yield* Effect.fail(validationError([{ path: "expires_at", message: "is in the past" }]))
    const secret = makeSecret()
    const record: ApiKeyRecord = {
      key_id: makeKeyId(),
      customer_id: customerId,
      name: request.name ?? null,
      scopes: [...new Set(request.scopes)],
      secret_hash: hashSecret(secret),
      created_at: now,
      expires_at: expiresAt,
      revoked_at: null
    }
    yield* insertKey(record)
    return { ...toPublicKey(record), key: `${record.key_id}:${secret}` }
  })

const invalidKey = () =>
  new AuthError({ reason_code: "AUTH_KEY_INVALID", message: "The API key is invalid." })
// Compared against when the key id is unknown, so both failures cost one hash and one compare.
const DUMMY_HASH = hashSecret("baton-dummy-secret-for-timing-parity")

const isUsable = (record: ApiKeyRecord, now: number): boolean =>
  record.revoked_at === null && (record.expires_at === null || record.expires_at > now)

const principalOf = (record: ApiKeyRecord): Principal => ({
  customerId: record.customer_id,
  keyId: record.key_id,
  scopes: record.scopes
})

/**
 * Checks a presented `key_id:secret`; unknown, malformed, wrong, revoked and
 * expired are one error. A key verified less than the cache TTL ago is taken
 * from the runtime's KeyCache, its secret still compared and its expiry still
 * checked. Every failure reads the store: an unknown id and a wrong secret
 * both cost one cache compare (a dummy one when nothing is cached), one store
 * read and one store compare, so their timing tells nothing. A wrong secret
 * does not evict a cached key (anyone knowing its id could flush it): that
 * store read refreshes the entry, which goes only if the store says the key
 * is revoked, expired or gone.
 */
export const verifyKey = (presented: string): Effect.Effect<Principal, AuthError | StorageError, KeyStore> =>
  Effect.gen(function* () {
    const parsed = typeof presented === "string" ? parseKey(presented) : null
    if (parsed === null) return yield* Effect.fail(invalidKey())
    const cache = Option.getOrNull(yield* Effect.serviceOption(KeyCache))
    const now = yield* Clock.currentTimeMillis
    const cached = cache?.get(parsed.keyId, now) ?? null
    const cacheMatches = secretMatches(parsed.secret, cached?.secret_hash ?? DUMMY_HASH)
    if (cached !== null && cacheMatches && isUsable(cached, now)) return principalOf(cached)
    const keys = yield* KeyStore
    const record = yield* keys.get(parsed.keyId)
    const matches = secretMatches(parsed.secret, record?.secret_hash ?? DUMMY_HASH)
    if (record === null || !isUsable(record, now)) {
      if (cached !== null) cache?.evict(parsed.keyId, now)
      return yield* Effect.fail(invalidKey())
    }
    // Verified, or a cached key's entry refreshed from this read (`now` predates it: see KeyCache.set).
    if (matches || cached !== null) cache?.set(record, now)
    if (!matches) return yield* Effect.fail(invalidKey())
    return principalOf(record)
  })

/**
 * Whether the key a principal authenticated with still verifies (not revoked,
 * not expired, still its customer's), by id, through the cache: an open stream
 * re-checks with this, at about one store read per key per TTL. A principal
 * without a key (an in-process caller) always does.
 */
export const keyStillValid = (principal: Principal): Effect.Effect<boolean, StorageError, KeyStore> =>
  Effect.gen(function* () {
    const keyId = principal.keyId
    if (keyId === null) return true
    const cache = Option.getOrNull(yield* Effect.serviceOption(KeyCache))
    const now = yield* Clock.currentTimeMillis
    const cached = cache?.get(keyId, now) ?? null
    const record = cached ?? (yield* Effect.flatMap(KeyStore, (keys) => keys.get(keyId)))
    if (record === null || !isUsable(record, now) || record.customer_id !== principal.customerId) {
      if (record !== null) cache?.evict(keyId, now)
      return false
    }
    if (cached === null) cache?.set(record, now)
    return true
  })

export const listKeys = (
  principal: Principal
): Effect.Effect<ReadonlyArray<ApiKey>, AuthError | StorageError, KeyStore> =>
  requireScope(principal, "keys:admin").pipe(
    Effect.zipRight(Effect.flatMap(KeyStore, (keys) => keys.list(principal.customerId))),
    Effect.map((rows) => rows.map(toPublicKey))
  )

/** Revokes one of the caller's keys; another customer's key is KEY_NOT_FOUND. */
export const revokeKey = (
  principal: Principal,
  keyId: string
): Effect.Effect<ApiKey, AuthError | StorageError, KeyStore> =>
  Effect.gen(function* () {
    yield* requireScope(principal, "keys:admin")
    const notFound = new AuthError({ reason_code: "KEY_NOT_FOUND", message: "No key with this id." })
    if (typeof keyId !== "string" || !KEY_ID_PATTERN.test(keyId)) return yield* Effect.fail(notFound)
    const keys = yield* KeyStore
    const now = yield* Clock.currentTimeMillis
    const revoked = yield* keys.revoke(keyId, principal.customerId, now)
    // Effective at once on this process (the tombstone also stops a verification in flight from
    // re-caching what it read before); other processes' entries age out within the cache TTL.
    const cache = yield* Effect.serviceOption(KeyCache)
    if (Option.isSome(cache)) cache.value.evict(keyId, yield* Clock.currentTimeMillis)
    return revoked === null ? yield* Effect.fail(notFound) : toPublicKey(revoked)
  })

/**
 * Makes sure `key_id:secret` exists with every scope for `customerId` (the
 * server's bootstrap key). Fails when that key id exists with another secret
 * or was revoked: a bootstrap key is never silently replaced.
 */
export const ensureKey = (
  presented: string,
  customerId: string
): Effect.Effect<Principal, ValidationError | AuthError | StorageError, KeyStore | EngineConfig> =>
  Effect.gen(function* () {
    const parsed = typeof presented === "string" ? parseKey(presented) : null
    if (parsed === null || typeof customerId !== "string" || !CUSTOMER_ID_PATTERN.test(customerId))
      return yield* Effect.fail(
        validationError([
          {
            path: "key",
            message: `must be key_id:secret (${KEY_ID_PATTERN.source} : ${SECRET_PATTERN.source})`
          }
        ])
      )
    const keys = yield* KeyStore
    const existing = yield* keys.get(parsed.keyId)
    if (existing === null) {
      const now = yield* Clock.currentTimeMillis
      yield* keys.insert({
        key_id: parsed.keyId,
        customer_id: customerId,
        name: "bootstrap",
        scopes: ALL_SCOPES,
        secret_hash: hashSecret(parsed.secret),
        created_at: now,
        expires_at: null,
        revoked_at: null
      })
    }
    return yield* verifyKey(presented)
  })

/** Readiness: the store answers. */
export const ping: Effect.Effect<void, StorageError, RunStore> = Effect.flatMap(RunStore, (s) => s.ping())
