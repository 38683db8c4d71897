import { randomBytes } from "node:crypto"
import {
  ALL_SCOPES,
  type ApiKeyRecord,
  type EngineConfigShape,
  type EngineServices,
  type EventRow,
  engineLayer,
  type Idempotency,
  type Principal,
  type StorageAdapter
} from "@baton/core"
import { Clock, Effect, type Either, ManagedRuntime } from "effect"

/**
 * Raw reads of what the adapter stored, bypassing its port methods: how the
 * suite proves a write landed as intended (not merely that the adapter reads
 * back what it wrote). Each returns plain JSON shaped like the port rows.
 */
export interface Backdoor {
  readonly rawRun: (runId: string) => Promise<unknown>
  readonly rawEvents: (runId: string) => Promise<ReadonlyArray<EventRow>>
  readonly rawIdempotency: (customerId: string, key: string) => Promise<Idempotency.IdempotencyRecord | null>
  readonly rawKey: (keyId: string) => Promise<ApiKeyRecord | null>
}

export interface AdapterUnderTest {
  readonly adapter: StorageAdapter
  readonly backdoor: Backdoor
  /** Closes what `makeAdapter` opened (and drops its schema or keys). */
  readonly close?: () => Promise<void>
}

/** What an adapter can do; a case that needs a missing capability is skipped with the reason in its name. */
export interface Capabilities {
  /**
   * Several connections write at once and the store serializes them correctly.
   * False for single-connection stores (PGlite) and emulators that lose concurrent updates.
   */
  readonly concurrentWriters: boolean
  /** Feed hints arrive without polling (LISTEN/NOTIFY, pub/sub, change streams, an emitter). */
  readonly liveFeed: boolean
}

export const DEFAULT_CAPABILITIES: Capabilities = { concurrentWriters: true, liveFeed: true }

export interface ConformanceOptions {
  readonly capabilities?: Partial<Capabilities>
  /** Engine settings for the suite's runtime (e.g. a longer poll for a slow store). */
  readonly config?: Partial<EngineConfigShape>
}

/** One engine runtime over the adapter, plus helpers the cases share. */
export class Harness {
  private constructor(
    readonly subject: AdapterUnderTest,
    readonly runtime: ManagedRuntime.ManagedRuntime<EngineServices, unknown>,
    readonly capabilities: Capabilities
  ) {}

  static async open(subject: AdapterUnderTest, options: ConformanceOptions): Promise<Harness> {
    const capabilities = { ...DEFAULT_CAPABILITIES, ...options.capabilities }
    const runtime = ManagedRuntime.make(
      engineLayer({
        storage: subject.adapter,
        acceptAnyHandler: true,
        config: {
          // A live feed must wake streams on its own: make polling too slow to hide a broken feed.
          feedPollIntervalMs: capabilities.liveFeed ? 120_000 : 50,
          maxAppendAttempts: 10_000,
          ...options.config
        }
      })
    )
    await runtime.runtime()
    return new Harness(subject, runtime, capabilities)
  }

  get backdoor(): Backdoor {
    return this.subject.backdoor
  }

  run<A, E>(effect: Effect.Effect<A, E, EngineServices>): Promise<A> {
    return this.runtime.runPromise(effect)
  }

  /** Runs an effect and returns its typed failure or success as data. */
  either<A, E>(effect: Effect.Effect<A, E, EngineServices>): Promise<Either.Either<A, E>> {
    return this.runtime.runPromise(Effect.either(effect))
  }

  async close(): Promise<void> {
    await this.runtime.dispose()
    await this.subject.close?.()
  }
}

const token = (n = 8) => randomBytes(n).toString("hex")

/** A customer no other test uses. */
export const newPrincipal = (): Principal => ({
  customerId: `cust_${token()}`,
  keyId: null,
  scopes: ALL_SCOPES
})

/** A handler name no other test uses, so claims never see another test's runs. */
export const newHandler = (): string => `h_${token()}`

export const newKey = (): string => `idem-${token()}`

/** A Clock stopped at `ms`: engine programs run under it decide "as of" that time. */
export const fixedClock = (ms: number): Clock.Clock => ({
  [Clock.ClockTypeId]: Clock.ClockTypeId,
  unsafeCurrentTimeMillis: () => ms,
  currentTimeMillis: Effect.succeed(ms),
  unsafeCurrentTimeNanos: () => BigInt(ms) * 1_000_000n,
  currentTimeNanos: Effect.succeed(BigInt(ms) * 1_000_000n),
  sleep: () => Effect.void
})

/** Runs an engine program as of `ms`. */
export const at = <A, E, R>(ms: number, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withClock(effect, fixedClock(ms))
