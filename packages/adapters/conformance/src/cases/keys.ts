import { type ApiKeyRecord, Engine, hashSecret, KeyStore } from "@baton/core"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { type Harness, newPrincipal } from "../Harness.js"

const keyStore = <A>(h: Harness, f: (k: KeyStore["Type"]) => Effect.Effect<A, unknown>) =>
  h.run(Effect.flatMap(KeyStore, f) as Effect.Effect<A, never, never>)

export const keyCases = (h: () => Harness) =>
  describe("keys", () => {
    it("stores only the hash of a secret, and verifies, lists and revokes a key", async () => {
      const p = newPrincipal()
      const issued = await h().run(Engine.issueKey(p, { scopes: ["runs:read", "runs:write"], name: "ci" }))
      const secret = issued.key.split(":")[1]!
      const raw = await h().backdoor.rawKey(issued.key_id)
      expect(raw).toMatchObject({
        key_id: issued.key_id,
        customer_id: p.customerId,
        secret_hash: hashSecret(secret)
      })
      expect(JSON.stringify(raw)).not.toContain(secret)
      expect(await h().run(Engine.verifyKey(issued.key))).toEqual({
        customerId: p.customerId,
        keyId: issued.key_id,
        scopes: ["runs:read", "runs:write"]
      })
      await h().run(Engine.revokeKey(p, issued.key_id))
      expect((await h().backdoor.rawKey(issued.key_id))?.revoked_at).toEqual(expect.any(Number))
      expect(await h().either(Engine.verifyKey(issued.key))).toMatchObject({
        _tag: "Left",
        left: { reason_code: "AUTH_KEY_INVALID" }
      })
    })

    it("inserts a key id once and keeps the first revocation time", async () => {
      const p = newPrincipal()
      const record: ApiKeyRecord = {
        key_id: `key_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 12)}`,
        customer_id: p.customerId,
        name: null,
        scopes: ["runs:read"],
        secret_hash: hashSecret("s".repeat(32)),
        created_at: 1000,
        expires_at: null,
        revoked_at: null
      }
      expect(await keyStore(h(), (k) => k.insert(record))).toBe(true)
      expect(await keyStore(h(), (k) => k.insert({ ...record, secret_hash: hashSecret("other") }))).toBe(
        false
      )
      expect((await keyStore(h(), (k) => k.get(record.key_id)))?.secret_hash).toBe(record.secret_hash)
      expect(await keyStore(h(), (k) => k.revoke(record.key_id, "someone-else", 2000))).toBeNull()
      expect((await keyStore(h(), (k) => k.revoke(record.key_id, p.customerId, 2000)))?.revoked_at).toBe(2000)
      expect((await keyStore(h(), (k) => k.revoke(record.key_id, p.customerId, 3000)))?.revoked_at).toBe(2000)
      expect(await keyStore(h(), (k) => k.get("key_doesnotexist000"))).toBeNull()
      expect((await keyStore(h(), (k) => k.list(p.customerId))).map((k) => k.key_id)).toEqual([record.key_id])
    })

    it("answers a ping", async () => {
      await expect(h().run(Engine.ping)).resolves.toBeUndefined()
    })
  })
