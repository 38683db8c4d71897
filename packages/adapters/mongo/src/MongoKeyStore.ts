/** KeyStore over the `api_keys` collection: `_id` is the key id; only the secret's hash is stored. */
import type { KeyStoreEncoded } from "@baton/core"
import type { Collections } from "./Collections.js"
import { decodeKey, encodeKey } from "./Documents.js"
import { isDuplicateKey, mongo } from "./StorageErrors.js"
import type { WriteGate } from "./WriteGate.js"

export const makeKeyStore = (c: Collections, gate: WriteGate): KeyStoreEncoded => ({
  insert: (key) =>
    mongo(async () => {
      try {
        await gate.run(() => c.apiKeys.insertOne(encodeKey(key)))
        return true
      } catch (cause) {
        if (isDuplicateKey(cause)) return false
        throw cause
      }
    }),

  get: (keyId) =>
    mongo(async () => {
      const doc = await c.apiKeys.findOne({ _id: keyId })
      return doc === null ? null : decodeKey(doc)
    }),

  list: (customerId) =>
    mongo(async () =>
      (await c.apiKeys.find({ customer_id: customerId }).sort({ created_at: 1, _id: 1 }).toArray()).map(
        decodeKey
      )
    ),

  revoke: (keyId, customerId, now) =>
    mongo(async () => {
      // The first revocation time is kept: a second revoke matches nothing and reads the key as it is.
      const revoked = await gate.run(() =>
        c.apiKeys.findOneAndUpdate(
          { _id: keyId, customer_id: customerId, revoked_at: null },
          { $set: { revoked_at: now } },
          { returnDocument: "after" }
        )
      )
      if (revoked !== null) return decodeKey(revoked)
      const doc = await c.apiKeys.findOne({ _id: keyId, customer_id: customerId })
      return doc === null ? null : decodeKey(doc)
    })
})
