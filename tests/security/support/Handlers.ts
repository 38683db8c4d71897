/**
 * The handlers the security suite's server runs (loaded through the
 * `baton.config.ts` support/Server.ts writes): the cluster suite's `work` and
 * `approval`, and `leaky`, which puts secrets into its step output, its
 * progress and its run output.
 *
 * A handler only ever sees the run input as stored, that is already redacted,
 * so `leaky` does not copy secrets from its input: it derives them from a
 * harmless `nonce` there, with `secretsFor`, which the test calls too.
 *
 * Only `import type` from Baton (the file is imported from a temporary directory).
 */
import type { Handler, JsonValue } from "@baton/core"
import { approval, work } from "../../cluster/support/Handlers.js"

/** Secret strings derived from `nonce` (24 letters and digits), each unique to it. */
export interface Secrets {
  /** Values under secret-named keys (`password`, `api_key`, `token`, `authorization`). */
  readonly password: string
  readonly apiKey: string
  readonly token: string
  readonly authorization: string
  /** A `Bearer …` credential and a Baton key inside ordinary text under harmless keys. */
  readonly bearer: string
  readonly batonKey: string
}

export const secretsFor = (nonce: string): Secrets => ({
  password: `pw${nonce}Hunter2`,
  apiKey: `ak${nonce}ApiKeyValue`,
  token: `tk${nonce}TokenValue`,
  authorization: `az${nonce}AuthValue`,
  bearer: `${nonce}BearerCredential`,
  batonKey: `key_${nonce}:${nonce}Secret${nonce.slice(0, 8)}`
})

/** Every string that must never be seen, once `secretsFor(nonce)` was used. */
export const secretStrings = (nonce: string): ReadonlyArray<string> => Object.values(secretsFor(nonce))

/** A JSON value carrying every kind of secret: by key, nested, in arrays, and inside plain text. */
export const leakyValue = (nonce: string, where: string): JsonValue => {
  const s = secretsFor(nonce)
  return {
    where,
    password: s.password,
    nested: { api_key: s.apiKey, list: [{ token: s.token }, `call with Bearer ${s.bearer} now`] },
    headers: { Authorization: s.authorization },
    note: `the key is ${s.batonKey}, keep it safe`
  }
}

const nonceOf = (input: JsonValue): string => {
  const nonce =
    typeof input === "object" && input !== null && !Array.isArray(input)
      ? (input as { readonly [k: string]: JsonValue }).nonce
      : undefined
  if (typeof nonce !== "string") throw new Error("leaky: input.nonce is required.")
  return nonce
}

/** `leaky`: one step that streams secrets as progress and returns them; the run returns them too. */
export const leaky: Handler = async (run) => {
  const nonce = nonceOf(run.input)
  const s = secretsFor(nonce)
  const stepOutput = await run.step("leak", async (step) => {
    step.progress({ content_delta: `token Bearer ${s.bearer} and ${s.batonKey} ` })
    step.progress({
      kind: "credentials",
      password: s.password,
      api_key: s.apiKey,
      detail: leakyValue(nonce, "progress")
    })
    return leakyValue(nonce, "step")
  })
  run.progress({ content_delta: `run-level Bearer ${s.bearer}` })
  return { step: stepOutput, final: leakyValue(nonce, "output") }
}

export default { handlers: { work, approval, leaky } }
