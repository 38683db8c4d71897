/**
 * The built-in handler `default`: what a fresh server runs before you bring
 * your own handlers. It answers `input.user_query` with a deterministic
 * sentence streamed word by word, and asks for approval first when
 * `input.require_approval` is true, so every part of the run lifecycle can be
 * tried over HTTP with no code.
 */
import { setTimeout as sleep } from "node:timers/promises"
import { FatalError, type Handler, type JsonObject, type JsonValue } from "@baton/core"

export interface DemoHandlerOptions {
  /** Pause between two streamed words, so a stream visibly streams (default 20 ms; 0 = none). */
  readonly tokenDelayMs?: number
}

/** The demo's answer to a query: deterministic, so a replay yields the same text. */
export const demoAnswer = (query: string): string =>
  `You asked: "${query.trim()}". This answer comes from Baton's built-in demo handler: ` +
  "it ran in a durable step named answer and was streamed to you word by word."

/** The answer split into word tokens, each with its trailing space; joined they give the answer back. */
export const demoTokens = (answer: string): ReadonlyArray<string> => answer.match(/\S+\s*/g) ?? []

const isObject = (value: JsonValue): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const field = (input: JsonValue, name: string): JsonValue | undefined =>
  isObject(input) ? input[name] : undefined

const preview = (query: string): string => (query.length > 80 ? `${query.slice(0, 77)}...` : query)

export const makeDemoHandler =
  (options: DemoHandlerOptions = {}): Handler =>
  async (run) => {
    const delayMs = options.tokenDelayMs ?? 20
    const query = field(run.input, "user_query")
    // A query that cannot be answered fails in the step at once; asking a human first would be pointless.
    const answerable = typeof query === "string" && query.trim() !== ""
    if (field(run.input, "require_approval") === true && answerable) {
      const decision = await run.awaitInput({
        prompt: `Approve answering "${preview(query)}"?`,
        actions: ["approve", "reject"]
      })
      if (decision.action === "reject") return { published: false }
    }
    const answer = await run.step("answer", async (step) => {
      if (!answerable)
        throw new FatalError("input.user_query must be a non-empty string (the question to answer).")
      const text = demoAnswer(query)
      for (const token of demoTokens(text)) {
        if (delayMs > 0) await sleep(delayMs, undefined, { signal: step.signal })
        step.progress({ content_delta: token })
      }
      return text
    })
    return { answer }
  }

/** The handler a server registers as `default` unless `baton.config.ts` replaces it. */
export const demoHandler: Handler = makeDemoHandler()
