import { randomBytes, randomUUID } from "node:crypto"
import { monotonicFactory } from "ulid"

const nextUlid = monotonicFactory()

/** `run_` + a ULID at `now`: ids sort by creation time, and strictly within one process. */
export const makeRunId = (now: number): string => `run_${nextUlid(now)}`

/** The ms timestamp a run id was minted at. */
export const runIdTime = (id: string): number => {
  const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
  let t = 0
  for (const ch of id.slice(4, 14)) t = t * 32 + alphabet.indexOf(ch)
  return t
}

/** An unguessable lease (fencing) token. */
export const makeLeaseToken = (): string => randomUUID()

/** `req_` + 20 random base32-ish characters. */
export const makeRequestId = (): string => `req_${randomBytes(12).toString("base64url")}`
