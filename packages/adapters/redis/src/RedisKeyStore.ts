/** KeyStore over Redis: one hash per key (only the secret's hash), one sorted set of key ids per customer. */
import { type ApiKeyRecord, type KeyStoreEncoded, type StorageError, storageUnavailable } from "@baton/core"
import { Effect } from "effect"
import { fromFlat, fromHash, toFieldPairs } from "./internal/Codec.js"
import { attempt } from "./internal/Errors.js"
import type { KeyLayout } from "./internal/Keys.js"
import type { RedisClient, Scripts } from "./internal/Scripts.js"

const parseKey = (parse: () => ApiKeyRecord | null): Effect.Effect<ApiKeyRecord | null, StorageError> =>
  Effect.try({ try: parse, catch: () => storageUnavailable("The store returned a malformed key.") })

export const makeRedisKeyStore = (
  client: RedisClient,
  keys: KeyLayout,
  scripts: Scripts
): KeyStoreEncoded => {
  const get = (keyId: string) =>
    Effect.flatMap(
      attempt(() => client.hgetall(keys.apiKey(keyId))),
      (hash) => parseKey(() => fromHash(hash) as ApiKeyRecord | null)
    )
  return {
    insert: (key) =>
      Effect.gen(function* () {
        // The list entry first: list reads each key and keeps only the customer's own,
        // so an entry whose insert then lost (a taken key_id) shows nothing.
        yield* attempt(() =>
          client.zadd(keys.customerKeys(key.customer_id), "NX", String(key.created_at), key.key_id)
        )
        const stored = yield* attempt(() => scripts.insertKey(keys.apiKey(key.key_id), ...toFieldPairs(key)))
        return stored === 1
      }),
    get,
    list: (customerId) =>
      Effect.gen(function* () {
        const ids = yield* attempt(() => client.zrange(keys.customerKeys(customerId), 0, "-1"))
        const rows = yield* Effect.forEach(ids, get, { concurrency: "unbounded" })
        return rows
          .filter((k): k is ApiKeyRecord => k !== null && k.customer_id === customerId)
          .sort((a, b) => a.created_at - b.created_at)
      }),
    revoke: (keyId, customerId, now) =>
      Effect.flatMap(
        attempt(() => scripts.revokeKey(keys.apiKey(keyId), JSON.stringify(customerId), JSON.stringify(now))),
        (flat) => parseKey(() => fromFlat(flat) as ApiKeyRecord | null)
      )
  }
}
