/**
 * The handlers the HTTP contract tests run, and the gates that let a test
 * hold a run in the middle of a step for as long as it likes.
 */
import type { AnyHandler, JsonValue, RunContext } from "@baton/core"

/** Named one-shot gates: `wait(name)` resolves once `open(name)` was called (before or after). */
export class Gates {
  private readonly opened = new Set<string>()
  private readonly waiting = new Map<string, Array<() => void>>()

  open(name: string): void {
    this.opened.add(name)
    for (const resolve of this.waiting.get(name) ?? []) resolve()
    this.waiting.delete(name)
  }

  /** Resolves when the gate opens; rejects when `signal` aborts (a cancel). */
  wait(name: string, signal: AbortSignal): Promise<void> {
    if (this.opened.has(name)) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason)
      const list = this.waiting.get(name) ?? []
      list.push(resolve)
      this.waiting.set(name, list)
      signal.addEventListener("abort", () => reject(signal.reason), { once: true })
    })
  }
}

const field = (input: JsonValue, name: string): JsonValue | undefined =>
  typeof input === "object" && input !== null && !Array.isArray(input)
    ? (input as { readonly [k: string]: JsonValue })[name]
    : undefined

const num = (input: JsonValue, name: string, fallback: number): number => {
  const v = field(input, name)
  return typeof v === "number" ? v : fallback
}

/** The JSON Schema the `stream` handler's wait asks `submit_input` to match. */
export const ANSWER_SCHEMA = {
  type: "object",
  required: ["answer"],
  properties: { answer: { type: "string" } },
  additionalProperties: false
} as const

/**
 * - `default`: one step echoing the input; output `{ echo: input }`.
 * - `stream`: a step streaming `input.deltas` (strings) as content deltas; with
 *   `input.wait`, then waits for input (`ANSWER_SCHEMA`); output `{ text, decision? }`.
 * - `gated`: a step that streams `before` deltas of `size` characters, blocks on
 *   gate `input.gate` (honouring cancel), then streams `after` more; output `{ ok: true }`.
 * - `parked` is accepted by the engine but executed by no worker: its runs stay queued.
 */
export const makeHandlers = (gates: Gates): Record<string, AnyHandler> => {
  const echo = async (run: RunContext) => ({ echo: await run.step("echo", () => run.input) })

  const stream = async (run: RunContext) => {
    const raw = field(run.input, "deltas")
    const deltas = Array.isArray(raw) ? raw.filter((d): d is string => typeof d === "string") : []
    const text = await run.step("generate", (step) => {
      for (const d of deltas) step.progress({ content_delta: d })
      return deltas.join("")
    })
    if (field(run.input, "wait") !== true) return { text }
    const decision = await run.awaitInput({
      prompt: "Continue?",
      actions: ["approve", "reject", "submit_input"],
      input_schema: { ...ANSWER_SCHEMA, required: [...ANSWER_SCHEMA.required] }
    })
    return {
      text,
      decision: {
        action: decision.action,
        ...(decision.input === undefined ? {} : { input: decision.input })
      }
    }
  }

  const gated = async (run: RunContext) => {
    const gate = String(field(run.input, "gate") ?? "")
    const before = num(run.input, "before", 1)
    const after = num(run.input, "after", 1)
    const chunk = "x".repeat(num(run.input, "size", 8))
    await run.step("hold", async (step) => {
      for (let i = 0; i < before; i++) step.progress({ content_delta: chunk })
      await gates.wait(gate, step.signal)
      for (let i = 0; i < after; i++) step.progress({ content_delta: chunk })
    })
    return { ok: true }
  }

  return { default: echo, stream, gated }
}

/** Every handler name a run may name: the executed ones and `parked`. */
export const ACCEPTED_HANDLERS = ["default", "stream", "gated", "parked"] as const
