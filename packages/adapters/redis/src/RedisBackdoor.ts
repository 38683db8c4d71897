/**
 * Raw reads of what the adapter stored, bypassing its ports: the conformance
 * suite's back door, and a debugging aid. Plain JSON shaped like the port rows.
 */
import type { ApiKeyRecord, EventRow, Idempotency } from "@baton/core"
import { fromHash, runFromHash } from "./internal/Codec.js"
import { keyLayout } from "./internal/Keys.js"
import type { RedisClient } from "./internal/Scripts.js"

export interface RedisBackdoor {
  readonly rawRun: (runId: string) => Promise<unknown>
  readonly rawEvents: (runId: string) => Promise<ReadonlyArray<EventRow>>
  readonly rawIdempotency: (customerId: string, key: string) => Promise<Idempotency.IdempotencyRecord | null>
  readonly rawKey: (keyId: string) => Promise<ApiKeyRecord | null>
}

export const redisBackdoor = (client: RedisClient, prefix: string): RedisBackdoor => {
  const keys = keyLayout(prefix)
  return {
    rawRun: async (runId) => runFromHash(await client.hgetall(keys.run(runId))),
    rawEvents: async (runId) =>
      (await client.lrange(keys.events(runId), 0, -1)).map((row) => JSON.parse(row) as EventRow),
    rawIdempotency: async (customerId, key) => {
      // Idempotency fields are plain strings (the scripts compare expires_at as a number).
      const hash = await client.hgetall(keys.idempotency(customerId, key))
      if (hash.run_id === undefined) return null
      return {
        customer_id: hash.customer_id ?? "",
        key: hash.key ?? "",
        fingerprint: hash.fingerprint ?? "",
        run_id: hash.run_id,
        expires_at: Number(hash.expires_at)
      }
    },
    rawKey: async (keyId) => fromHash(await client.hgetall(keys.apiKey(keyId))) as ApiKeyRecord | null
  }
}
