/**
 * Lost replies for real: the adapter's connection goes through a proxy that
 * lets a script run and then drops the connection before its reply, so ioredis
 * reconnects and sends the same script again. The test proves the resend
 * happened (the proxy saw the script twice) and that the answer is still the
 * truth — also when another writer's append landed in between.
 */
import { createHash } from "node:crypto"
import { redisStorage } from "@baton/adapter-redis"
import { Appended, RunStore, type RunStoreEncoded } from "@baton/core"
import { Context, Effect, Either, Exit, Layer, Scope } from "effect"
import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Lua from "../src/lua/index.js"
import { type LossyProxy, makeLossyProxy } from "./support/proxy.js"
import { dropPrefix, findRedis, uniquePrefix } from "./support/redis.js"
import { makeStore, newRun, run, token } from "./support/scenario.js"

const location = await findRedis()
/** What a script call looks like on the wire: EVALSHA with its SHA-1, or EVAL with its source. */
const onTheWire = (lua: string) => [createHash("sha1").update(lua).digest("hex"), lua.slice(0, 60)]

if (location === null) {
  describe("redis lost replies", () => {
    it.skip("redis not found: set BATON_TEST_REDIS_URL (or start redis on 127.0.0.1:6379)", () => {})
  })
} else {
  describe("redis lost replies (a proxy drops the connection before the reply)", () => {
    const prefix = uniquePrefix("resend")
    const admin = new Redis(location.url)
    const direct = makeStore(admin, prefix)
    let proxy: LossyProxy
    let scope: Scope.CloseableScope
    let viaProxy: RunStoreEncoded

    beforeAll(async () => {
      const target = new URL(location.url)
      proxy = await makeLossyProxy({ host: target.hostname, port: Number(target.port || 6379) })
      const url = new URL(location.url)
      url.hostname = "127.0.0.1"
      url.port = String(proxy.port)
      scope = Effect.runSync(Scope.make())
      const context = await Effect.runPromise(
        Layer.buildWithScope(redisStorage({ url: url.toString(), prefix, log: () => {} }).layer, scope)
      )
      viaProxy = Context.get(context, RunStore)
    })

    afterAll(async () => {
      if (scope !== undefined) await Effect.runPromise(Scope.close(scope, Exit.void))
      await proxy?.close()
      await dropPrefix(admin, prefix)
      await admin.quit()
      await location.stop()
    })

    it("an append whose reply was lost, resent after another writer's append, answers Appended and is applied once", async () => {
      const now = Date.now()
      const created = newRun(`cust_${token()}`, `h_${token()}`, now)
      await run(direct.create({ ...created, run: created.record, idempotency: null, now }))
      const step = (seq: number) => ({
        run_id: created.record.id,
        seq,
        type: "step.progress",
        timestamp: now + seq,
        payload: {
          redacted: false,
          value: { step_id: "s:1", kind: "content_delta", content_delta: `d${seq}` }
        }
      })
      const appendSha = onTheWire(Lua.append)
      const lost = proxy.loseReplyTo(appendSha)
      // 1. This append runs in Redis; its reply is lost with the connection.
      const first = Effect.runPromise(
        Effect.either(
          viaProxy.append(created.record.id, { version: 1, leaseToken: null }, [step(2)], { last_seq: 2 })
        )
      )
      await lost
      // 2. Another writer appends meanwhile (it read version 2: the first append landed).
      expect(
        await run(
          direct.append(created.record.id, { version: 2, leaseToken: null }, [step(3)], { last_seq: 3 })
        )
      ).toEqual(Appended)
      // 3. The adapter reconnects and sends the first append again.
      proxy.release()
      expect(await first).toEqual(Either.right(Appended))
      expect(proxy.count(appendSha)).toBeGreaterThanOrEqual(2)
      const log = await run(direct.readEvents(created.record.id, 0, 100))
      expect(log.map((e) => e.seq)).toEqual([1, 2, 3])
      expect(log.slice(1)).toEqual([step(2), step(3)])
      expect(await run(direct.get(created.record.id))).toMatchObject({ version: 3, last_seq: 3 })
    })

    it("a create whose reply was lost is answered Created once, with one run", async () => {
      const now = Date.now()
      const created = newRun(`cust_${token()}`, `h_${token()}`, now)
      const createSha = onTheWire(Lua.createRun)
      const lost = proxy.loseReplyTo(createSha)
      const answer = Effect.runPromise(
        viaProxy.create({ ...created, run: created.record, idempotency: null, now })
      )
      await lost
      proxy.release()
      expect(await answer).toMatchObject({ _tag: "Created", run: { id: created.record.id } })
      expect(proxy.count(createSha)).toBeGreaterThanOrEqual(2)
      expect(await run(direct.readEvents(created.record.id, 0, 100))).toHaveLength(1)
      expect(
        (await run(direct.list({ customerId: created.record.customer_id }, null, 10))).runs
      ).toHaveLength(1)
    })
  })
}
