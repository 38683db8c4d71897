/**
 * Whether this process's writes may overlap. On MongoDB they may: the server
 * detects conflicting transactions and the driver retries them. A server that
 * loses concurrent updates (the jongodb emulator used in CI) needs them one at
 * a time, as a single-connection store runs them.
 */
export interface WriteGate {
  readonly run: <A>(work: () => Promise<A>) => Promise<A>
}

/** Writes run as they come. */
export const concurrentWrites: WriteGate = { run: (work) => work() }

/** Writes run one after another, in call order. */
export const serialWrites = (): WriteGate => {
  let tail: Promise<unknown> = Promise.resolve()
  return {
    run: <A>(work: () => Promise<A>): Promise<A> => {
      const result = tail.then(work, work)
      // The next write waits for this one to settle, whatever its outcome.
      tail = result.catch(() => {})
      return result
    }
  }
}
