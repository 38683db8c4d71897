/** KeyStore: API keys by key_id. Only the SHA-256 of a secret is ever stored. */
import { Context, Effect, Schema } from "effect"
import { ApiKeyRecord } from "../ApiKey.js"
import { type StorageError, storageUnavailable } from "../Errors.js"

export interface KeyStoreEncoded {
  /** Stores the key unless its key_id exists; true when stored. */
  readonly insert: (key: ApiKeyRecord) => Effect.Effect<boolean, StorageError>
  readonly get: (keyId: string) => Effect.Effect<ApiKeyRecord | null, StorageError>
  /** The customer's keys, revoked ones included, oldest first. */
  readonly list: (customerId: string) => Effect.Effect<ReadonlyArray<ApiKeyRecord>, StorageError>
  /** Sets `revoked_at` (once) on the customer's key; returns it, or null when it has no such key. */
  readonly revoke: (
    keyId: string,
    customerId: string,
    now: number
  ) => Effect.Effect<ApiKeyRecord | null, StorageError>
}

const decode = Schema.decodeUnknown(ApiKeyRecord)
const check = (row: ApiKeyRecord | null) =>
  row === null
    ? Effect.succeed(null)
    : Effect.mapError(decode(row), () => storageUnavailable("The store returned a malformed key."))

export class KeyStore extends Context.Tag("@baton/core/KeyStore")<KeyStore, KeyStoreEncoded>() {
  static makeEncoded(driver: KeyStoreEncoded): KeyStoreEncoded {
    return {
      insert: driver.insert,
      get: (id) => Effect.flatMap(driver.get(id), check),
      list: (customer) =>
        Effect.flatMap(driver.list(customer), (rows) =>
          Effect.forEach(rows, (r) =>
            Effect.mapError(decode(r), () => storageUnavailable("The store returned a malformed key."))
          )
        ),
      revoke: (id, customer, now) => Effect.flatMap(driver.revoke(id, customer, now), check)
    }
  }
}
