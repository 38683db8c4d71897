/**
 * Dependency injection for embedders and the server: tsyringe tokens, and
 * `createEngine`, which builds one Effect ManagedRuntime from what is
 * registered. Library code never touches tsyringe's global container.
 */
import { Cause, Effect, Exit, Layer, ManagedRuntime, Option, Schema, Scope } from "effect"
import type { DependencyContainer } from "tsyringe"
import { ALL_SCOPES, type ApiKey, type Principal } from "./ApiKey.js"
import * as Engine from "./Engine.js"
import { DEFAULT_ENGINE_CONFIG, EngineConfig, type EngineConfigShape } from "./EngineConfig.js"
import type { BatonError, StorageError } from "./Errors.js"
import { KeyCache } from "./KeyCache.js"
import type { Run } from "./Run.js"
import type { AnyHandler } from "./RunContext.js"
import { isTerminalEventType, type RunEvent } from "./RunEvent.js"
import { type RunEventCursor, RunEventReaders } from "./RunEventReaders.js"
import type { StorageAdapter, StoragePorts } from "./Storage.js"
import * as Worker from "./Worker.js"

export const Tokens = {
  /** A `StorageAdapter`. */
  Storage: Symbol.for("@baton/core/Storage"),
  /** `Partial<EngineConfigShape>`. */
  Config: Symbol.for("@baton/core/Config"),
  /** `Readonly<Record<string, AnyHandler>>`: the handlers this process can execute. */
  Handlers: Symbol.for("@baton/core/Handlers")
} as const

export interface EngineOptions {
  readonly storage: StorageAdapter
  /** Handlers by name. A run must name one of them (default `default`) unless `acceptAnyHandler`. */
  readonly handlers?: Readonly<Record<string, AnyHandler>>
  /** Accept runs for handlers this process does not have (an API-only process). */
  readonly acceptAnyHandler?: boolean
  readonly config?: Partial<EngineConfigShape>
}

/** Thrown (as a rejection) for a failure that is not an expected outcome: a bug, never user input. */
export class InternalError extends Schema.TaggedError<InternalError>()("InternalError", {
  reason_code: Schema.Literal("INTERNAL"),
  message: Schema.String
}) {}

/** The customer and scopes used when an embedder calls without a principal. */
export const LOCAL_PRINCIPAL: Principal = { customerId: "default", keyId: null, scopes: ALL_SCOPES }

export type EngineServices = StoragePorts | EngineConfig | KeyCache | RunEventReaders

/**
 * An engine: the programs of `Engine.ts` bound to one runtime, as Promises.
 * Rejections are always a tagged error with a `reason_code` (BatonError or InternalError).
 */
export class BatonEngine {
  constructor(
    readonly runtime: ManagedRuntime.ManagedRuntime<EngineServices, unknown>,
    readonly options: EngineOptions
  ) {}

  /** Runs any engine program on this engine's runtime. */
  async run<A, E extends BatonError>(program: Effect.Effect<A, E, EngineServices>): Promise<A> {
    const exit = await this.runtime.runPromiseExit(program)
    if (Exit.isSuccess(exit)) return exit.value
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) throw failure.value
    throw new InternalError({ reason_code: "INTERNAL", message: "Internal error." })
  }

  createRun(
    body: unknown,
    options: { idempotencyKey?: string; requireIdempotencyKey?: boolean; principal?: Principal } = {}
  ): Promise<Engine.CreateRunResult> {
    return this.nudgeAfter(
      this.run(
        Engine.createRun(options.principal ?? LOCAL_PRINCIPAL, body, {
          idempotencyKey: options.idempotencyKey,
          ...(options.requireIdempotencyKey === undefined
            ? {}
            : { requireIdempotencyKey: options.requireIdempotencyKey })
        })
      )
    )
  }
  getRun(runId: string, principal: Principal = LOCAL_PRINCIPAL): Promise<Run> {
    return this.run(Engine.getRun(principal, runId))
  }
  listRuns(query: unknown = {}, principal: Principal = LOCAL_PRINCIPAL): Promise<Engine.RunPage> {
    return this.run(Engine.listRuns(principal, query))
  }
  readEvents(
    runId: string,
    query: unknown = {},
    principal: Principal = LOCAL_PRINCIPAL
  ): Promise<Engine.EventPage> {
    return this.run(Engine.readEvents(principal, runId, query))
  }
  signalRun(
    runId: string,
    body: unknown,
    principal: Principal = LOCAL_PRINCIPAL,
    options: { idempotencyKey?: string } = {}
  ): Promise<Run> {
    return this.nudgeAfter(this.run(Engine.signalRun(principal, runId, body, options)))
  }

  /** Wakes this process's workers once `work` succeeded: a run is claimable now. */
  private async nudgeAfter<A>(work: Promise<A>): Promise<A> {
    const result = await work
    for (const worker of this.workers) worker.nudge()
    return result
  }
  cancelRun(runId: string, body: unknown = {}, principal: Principal = LOCAL_PRINCIPAL): Promise<Run> {
    return this.run(Engine.cancelRun(principal, runId, body))
  }
  /**
   * The run's events after `afterSeq`, then live, ending after the terminal
   * event. Ownership is checked before the first event; the events come
   * from the run's reader shared by every subscriber in this process, and
   * leaving the loop early leaves it (the last one out stops it).
   */
  async subscribe(
    runId: string,
    options: { afterSeq?: number; principal?: Principal } = {}
  ): Promise<AsyncIterable<RunEvent>> {
    const start = await this.run(
      Engine.startSubscription(options.principal ?? LOCAL_PRINCIPAL, runId, options.afterSeq ?? 0)
    )
    if (start === null) return { [Symbol.asyncIterator]: () => ({ next: async () => DONE }) }
    const scope = await this.runtime.runPromise(Scope.make())
    const cursor = await this.run(
      Effect.flatMap(RunEventReaders, (readers) =>
        Scope.extend(readers.open(start.runId, start.afterSeq), scope)
      )
    ).catch(async (error: unknown) => {
      await this.runtime.runPromise(Scope.close(scope, Exit.void))
      throw error
    })
    // Leaving never fails the consumer: a runtime already disposed has released the reader.
    const leave = () => this.runtime.runPromise(Scope.close(scope, Exit.void)).catch(() => undefined)
    return { [Symbol.asyncIterator]: () => cursorIterator(cursor, (gap) => this.run(gap), leave) }
  }
  issueKey(body: unknown, principal: Principal = LOCAL_PRINCIPAL): Promise<Engine.IssuedKey> {
    return this.run(Engine.issueKey(principal, body))
  }
  verifyKey(presented: string): Promise<Principal> {
    return this.run(Engine.verifyKey(presented))
  }
  /** Whether `principal`'s key still verifies (through the key cache); always for in-process callers. */
  keyStillValid(principal: Principal): Promise<boolean> {
    return this.run(Engine.keyStillValid(principal))
  }
  listKeys(principal: Principal = LOCAL_PRINCIPAL): Promise<ReadonlyArray<ApiKey>> {
    return this.run(Engine.listKeys(principal))
  }
  revokeKey(keyId: string, principal: Principal = LOCAL_PRINCIPAL): Promise<ApiKey> {
    return this.run(Engine.revokeKey(principal, keyId))
  }
  sweep(limit?: number): Promise<number> {
    return this.run(Engine.sweep(limit))
  }
  ping(): Promise<void> {
    return this.run(Engine.ping)
  }
  /**
   * Starts a worker executing this engine's handlers; it claims runs until
   * `stop()`. Several workers (here or in other processes) share the work.
   */
  startWorker(options: Omit<Worker.WorkerOptions, "handlers"> = {}): Promise<Worker.WorkerHandle> {
    const worker = this.run(Worker.startWorker({ ...options, handlers: this.options.handlers ?? {} }))
    // The caller sees a rejection; this bookkeeping branch must not raise another.
    worker.then(
      (w) => this.workers.add(w),
      () => {}
    )
    return worker
  }

  private readonly workers = new Set<Worker.WorkerHandle>()

  /** Stops this engine's workers (draining them briefly), then closes the storage connections. */
  async dispose(options: Worker.StopOptions = { graceMs: 1000 }): Promise<void> {
    await Promise.all([...this.workers].map((w) => w.stop(options)))
    this.workers.clear()
    await this.runtime.dispose()
  }
}

/** The Layer an engine runs on: the adapter's ports, the config, the verified-key cache, and the run readers shared by subscribers. */
export const engineLayer = (options: EngineOptions): Layer.Layer<EngineServices, unknown> => {
  const handlers = options.handlers === undefined ? [] : Object.keys(options.handlers)
  const config = {
    ...DEFAULT_ENGINE_CONFIG,
    handlers: options.acceptAnyHandler === true ? null : new Set(handlers),
    ...options.config
  }
  return RunEventReaders.layer.pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        options.storage.layer,
        Layer.succeed(EngineConfig, config),
        // One per engine (per runtime): two engines in one process share nothing, like two processes.
        KeyCache.layer(config.keyCacheTtlMs)
      )
    )
  )
}

/** Wires storage, handlers and config into an engine in one call. */
export const createEngine = (options: EngineOptions): BatonEngine =>
  new BatonEngine(ManagedRuntime.make(engineLayer(options)), options)

/** Registers an engine's parts in a (child) container the caller owns. */
export const registerEngine = (
  container: DependencyContainer,
  options: EngineOptions
): DependencyContainer => {
  container.register(Tokens.Storage, { useValue: options.storage })
  container.register(Tokens.Handlers, { useValue: options.handlers ?? {} })
  // `acceptAnyHandler` travels as config (`handlers: null`), the one place engines read it from.
  container.register(Tokens.Config, {
    useValue: { ...options.config, ...(options.acceptAnyHandler === true ? { handlers: null } : {}) }
  })
  return container
}

/** Builds an engine from what a container holds (`Tokens.Storage` required). */
export const engineFromContainer = (container: DependencyContainer): BatonEngine => {
  const storage = container.resolve<StorageAdapter>(Tokens.Storage)
  const handlers = container.isRegistered(Tokens.Handlers)
    ? container.resolve<Readonly<Record<string, AnyHandler>>>(Tokens.Handlers)
    : {}
  const config = container.isRegistered(Tokens.Config)
    ? container.resolve<Partial<EngineConfigShape>>(Tokens.Config)
    : {}
  return createEngine({ storage, handlers, config })
}

const DONE = { done: true, value: undefined } as const

/**
 * A cursor of a run's shared reader as an async iterator: plain promises, no
 * fiber per subscriber. It leaves the reader after the terminal event or on
 * `return()`, which also settles a `next()` waiting for the next event (as
 * done): a consumer that stops while waiting is never left hanging. One
 * `next()` at a time, as `for await` calls it.
 */
const cursorIterator = (
  cursor: RunEventCursor,
  readGap: (gap: Effect.Effect<ReadonlyArray<RunEvent>, StorageError>) => Promise<ReadonlyArray<RunEvent>>,
  leave: () => Promise<void>
): AsyncIterator<RunEvent> => {
  let batch: ReadonlyArray<RunEvent> = []
  let index = 0
  let done = false
  let stopWaiting: (() => void) | null = null
  const finish = async () => {
    if (done) return
    done = true
    stopWaiting?.()
    await leave()
  }
  return {
    next: async () => {
      for (;;) {
        if (done) return DONE
        if (index < batch.length) {
          const event = batch[index++]!
          if (isTerminalEventType(event.type)) void finish()
          return { done: false, value: event }
        }
        index = 0
        batch = cursor.takeShared() ?? []
        if (batch.length > 0) continue
        if (cursor.behind) {
          batch = await readGap(cursor.readGap).catch(async (error: unknown) => {
            await finish()
            throw error
          })
          continue
        }
        if (cursor.ended) {
          await finish()
          return DONE
        }
        // Waits for the reader; `finish` stops the wait at once.
        const error = await new Promise<StorageError | null>((resolve) => {
          const cancel = cursor.onChange(resolve)
          stopWaiting = () => {
            cancel()
            resolve(null)
          }
        })
        stopWaiting = null
        if (error !== null) {
          await finish()
          throw error
        }
      }
    },
    return: async () => {
      await finish()
      return DONE
    }
  }
}
