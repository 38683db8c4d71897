/**
 * An unknown key id and a known key id with a wrong secret must be
 * indistinguishable: same status, same body apart from the request id, same
 * header names, and the same latency.
 *
 * The known key is used with its real secret before each pair, so the server's
 * verified-key cache holds it and the wrong secret meets the cached path: a
 * cache that refused a mismatch without the store read would answer faster.
 *
 * Latency: SAMPLES pairs, each pair the two kinds back to back in a random
 * order over one kept-alive connection, so drift and load hit both alike. The
 * statistic is the median of the pairwise differences (robust to the outliers
 * a busy two-core machine produces), compared with a tolerance below one store
 * round trip: TOLERANCE_FLOOR_MS plus TOLERANCE_SHARE of the median latency
 * (a loaded machine slows every part of a request, store reads included).
 * A round outside the tolerance is followed by up to two more (see below).
 *
 * Checked by a temporary hack in verifyKey (packages/core/src/Engine.ts): one
 * more `keys.get` on the known-key path. Measured on this machine (shared, noisy):
 * without it, pairwise differences of -0.24 to +0.16 ms at medians of 2–10 ms
 * (once -0.51 ms at 10 ms, inside that run's tolerance); with it, 0.43–0.56 ms
 * on Redis and 0.71–2.1 ms on Postgres over all three rounds, against
 * tolerances of 0.23–0.46 ms, so the test fails on both lanes. A looser first
 * setting (0.25 ms + 4 %) let the hack pass once on Postgres; hence these.
 * A second hack, refusing a wrong secret for a cached key without reading the
 * store, gave -0.95 to -1.6 ms against tolerances of 0.32–0.42 ms and failed
 * on both lanes (the test without the valid request before each pair passed).
 */
import { randomBytes } from "node:crypto"
import { expect, it } from "vitest"
import { call } from "../../cluster/support/Api.js"
import type { Register } from "./Suite.js"

/** Pairs per round, and at most this many rounds. */
const SAMPLES = 400
const ROUNDS = 3
/** The two kinds may differ by this much (ms) plus TOLERANCE_SHARE of the median latency. */
export const TOLERANCE_FLOOR_MS = 0.15
export const TOLERANCE_SHARE = 0.03

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
const ALNUM = B64URL.slice(0, 62)
const randomOf = (alphabet: string, n: number): string =>
  Array.from(randomBytes(n), (byte) => alphabet[byte % alphabet.length]).join("")
const randomKeyId = (): string => `key_${randomOf(ALNUM, 24)}`
const randomSecret = (): string => randomOf(B64URL, 43)

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((x, y) => x - y)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

interface Sample {
  readonly status: number
  readonly body: string
  readonly headerNames: string
  readonly ms: number
}

export const timingPart: Register = (get, lane) => {
  it(`timing on ${lane}: an unknown key id and a wrong secret answer alike, within ${TOLERANCE_FLOOR_MS} ms + ${TOLERANCE_SHARE * 100}%`, async (ctx) => {
    const context = get()
    if (context === null) return ctx.skip(`${lane} not found (see the warning above)`)
    const { server, operatorKey } = context.server
    const minted = await call(server, operatorKey, "POST", "/api-keys", {
      json: { customer_id: `timing-${randomOf(ALNUM, 6)}`, scopes: ["runs:read"] }
    })
    expect(minted.status).toBe(201)
    const knownKeyId = minted.body.key_id as string
    const validKey = minted.body.key as string

    const once = async (credential: string): Promise<Sample> => {
      const started = process.hrtime.bigint()
      const response = await fetch(`${server.url}/v1/runs?limit=1`, {
        headers: { authorization: `Bearer ${credential}` },
        signal: AbortSignal.timeout(10_000)
      })
      const text = await response.text()
      const ms = Number(process.hrtime.bigint() - started) / 1e6
      const { request_id: _, ...body } = JSON.parse(text)
      const headerNames = [...response.headers.keys()]
        .filter((name) => name !== "date")
        .sort()
        .join(",")
      return { status: response.status, body: JSON.stringify(body), headerNames, ms }
    }
    const unknown = () => once(`${randomKeyId()}:${randomSecret()}`)
    const wrongSecret = () => once(`${knownKeyId}:${randomSecret()}`)
    // The key with its real secret, just before a pair: the server's verified-key cache then holds it, so
    // the wrong secret meets the cached path (and a cache that answered a mismatch alone would show here).
    const useValidKey = async () => {
      const answer = await once(validKey)
      expect(answer.status, "the known key with its real secret").toBe(200)
    }

    // Warm both paths (connections, JIT, the store's caches) before measuring.
    for (let i = 0; i < 30; i++) {
      await useValidKey()
      await Promise.all([unknown(), wrongSecret()])
    }
    const differences: number[] = []
    const unknownMs: number[] = []
    const wrongMs: number[] = []
    let reference: Sample | null = null
    const measure = async (pairs: number) => {
      for (let i = 0; i < pairs; i++) {
        await useValidKey()
        const unknownFirst = randomBytes(1)[0]! % 2 === 0
        const first = await (unknownFirst ? unknown() : wrongSecret())
        const second = await (unknownFirst ? wrongSecret() : unknown())
        const [u, w] = unknownFirst ? [first, second] : [second, first]
        reference ??= u
        for (const sample of [u, w]) {
          expect(sample.status).toBe(401)
          expect(sample.body).toBe(reference.body)
          expect(sample.headerNames).toBe(reference.headerNames)
        }
        differences.push(w.ms - u.ms)
        unknownMs.push(u.ms)
        wrongMs.push(w.ms)
      }
    }
    // Sequential: a round that lands outside the tolerance (a burst of load from elsewhere) is followed by
    // another, judged on all samples so far; a real difference stays outside however many rounds are taken.
    let shift = Number.POSITIVE_INFINITY
    let tolerance = 0
    for (let round = 1; round <= ROUNDS && Math.abs(shift) >= tolerance; round++) {
      await measure(SAMPLES)
      shift = median(differences)
      tolerance = TOLERANCE_FLOOR_MS + TOLERANCE_SHARE * median([...unknownMs, ...wrongMs])
      console.log(
        `[security ${lane}] timing over ${differences.length} pairs: median unknown ${median(unknownMs).toFixed(3)} ms, ` +
          `wrong secret ${median(wrongMs).toFixed(3)} ms, median pairwise difference ${shift.toFixed(3)} ms ` +
          `(tolerance ${tolerance.toFixed(3)} ms)`
      )
    }
    expect(JSON.parse(reference!.body).reason_code).toBe("AUTH_KEY_INVALID")
    expect(Math.abs(shift)).toBeLessThan(tolerance)
  }, 150_000)
}
