import { Context, Layer } from "effect"
import { DEFAULT_IDEMPOTENCY_TTL_MS } from "./Idempotency.js"
import { DEFAULT_KEY_CACHE_TTL_MS } from "./KeyCache.js"
import { DEFAULT_LIMITS, type Limits } from "./Limits.js"
import { DEFAULT_REDACTION_POLICY, type RedactionPolicy } from "./Redaction.js"

export interface EngineConfigShape {
  /** How long an idempotency key keeps answering with its run (SPEC §4: 24 h). */
  readonly idempotencyTtlMs: number
  /** Limits of a run whose creator sent none (per field). */
  readonly defaultLimits: Limits
  readonly redaction: RedactionPolicy
  /** Handler names a run may name; null accepts any name (an API-only process). */
  readonly handlers: ReadonlySet<string> | null
  /** A stream re-reads the log this often even without a feed hint. */
  readonly feedPollIntervalMs: number
  /** Compare-and-append attempts of an API write before it reports the conflict as unavailability. */
  readonly maxAppendAttempts: number
  /** The customer whose `keys:admin` keys may manage other customers' keys (the operator). */
  readonly operatorCustomerId: string
  /**
   * How long a verified key's record is reused by this process (0: every request reads the store).
   * A revocation made on another process takes effect here within this time.
   */
  readonly keyCacheTtlMs: number
}

export const DEFAULT_ENGINE_CONFIG: EngineConfigShape = {
  idempotencyTtlMs: DEFAULT_IDEMPOTENCY_TTL_MS,
  defaultLimits: DEFAULT_LIMITS,
  redaction: DEFAULT_REDACTION_POLICY,
  handlers: null,
  feedPollIntervalMs: 1000,
  maxAppendAttempts: 50,
  operatorCustomerId: "default",
  keyCacheTtlMs: DEFAULT_KEY_CACHE_TTL_MS
}

export class EngineConfig extends Context.Tag("@baton/core/EngineConfig")<EngineConfig, EngineConfigShape>() {
  static layer(overrides: Partial<EngineConfigShape> = {}): Layer.Layer<EngineConfig> {
    return Layer.succeed(EngineConfig, { ...DEFAULT_ENGINE_CONFIG, ...overrides })
  }
}
