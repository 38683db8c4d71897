/**
 * Dependency injection for embedders and the server: tsyringe tokens, and
 * `createEngine`, which builds one Effect ManagedRuntime from what is
 * registered. Library code never touches tsyringe's global container.
 */
import { Cause, type Effect, Exit, Layer, ManagedRuntime, Option, Schema, Stream } from "effect"
import type { DependencyContainer } from "tsyringe"
import { ALL_SCOPES, type ApiKey, type Principal } from "./ApiKey.js"
import * as Engine from "./Engine.js"
import { EngineConfig, type EngineConfigShape } from "./EngineConfig.js"
import type { BatonError } from "./Errors.js"
import type { Run } from "./Run.js"
import type { AnyHandler } from "./RunContext.js"
import type { RunEvent } from "./RunEvent.js"
import { RunEventReaders } from "./RunEventReaders.js"
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

export type EngineServices = StoragePorts | EngineConfig | RunEventReaders

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
   * event. Ownership is checked before the first event; leaving the loop
   * early releases the feed subscription.
   */
  async subscribe(
    runId: string,
    options: { afterSeq?: number; principal?: Principal } = {}
  ): Promise<AsyncIterable<RunEvent>> {
    const stream = await this.run(
      Engine.subscribe(options.principal ?? LOCAL_PRINCIPAL, runId, options.afterSeq ?? 0)
    )
    const events = Stream.toAsyncIterableRuntime(stream, await this.runtime.runtime())
    return { [Symbol.asyncIterator]: () => closable(events[Symbol.asyncIterator]()) }
  }
  issueKey(body: unknown, principal: Principal = LOCAL_PRINCIPAL): Promise<Engine.IssuedKey> {
    return this.run(Engine.issueKey(principal, body))
  }
  verifyKey(presented: string): Promise<Principal> {
    return this.run(Engine.verifyKey(presented))
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

/** The Layer an engine runs on: the adapter's ports, the config, and the run readers shared by subscribers. */
export const engineLayer = (options: EngineOptions): Layer.Layer<EngineServices, unknown> => {
  const handlers = options.handlers === undefined ? [] : Object.keys(options.handlers)
  const config = EngineConfig.layer({
    handlers: options.acceptAnyHandler === true ? null : new Set(handlers),
    ...options.config
  })
  return RunEventReaders.layer.pipe(Layer.provideMerge(Layer.merge(options.storage.layer, config)))
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
 * An iterator whose `return()` also settles every pending `next()` (as done),
 * and any later one: a consumer that stops while waiting for the next event
 * is never left hanging.
 */
const closable = <A>(inner: AsyncIterator<A>): AsyncIterator<A> => {
  let closed = false
  const pending = new Set<(result: IteratorResult<A>) => void>()
  return {
    next: () =>
      closed
        ? Promise.resolve(DONE)
        : new Promise<IteratorResult<A>>((resolve, reject) => {
            pending.add(resolve)
            inner.next().then(
              (result) => {
                pending.delete(resolve)
                resolve(closed ? DONE : result)
              },
              (error: unknown) => {
                pending.delete(resolve)
                if (closed) resolve(DONE)
                else reject(error)
              }
            )
          }),
    return: async () => {
      closed = true
      for (const resolve of pending) resolve(DONE)
      pending.clear()
      await inner.return?.()?.catch(() => undefined)
      return DONE
    }
  }
}
