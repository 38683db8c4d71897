/** What scenario 3 streams, and what its Baton round hands to the ceiling rounds. */

export interface Workload {
  readonly runs: number
  readonly deltasPerRun: number
}

/** Connections of Baton's Postgres pool and of the ceiling's pool. */
export const POOL_SIZE = 10

/**
 * Watches the appends of Baton's round so a ceiling can replay the same
 * writes: the adapter's own statement or script, with the batch sizes the
 * engine chose.
 */
export interface AppendRecorder {
  /** Starts watching the round on `namespace`; the returned function stops. */
  readonly observe: (namespace: string) => () => void
  /** Progress events per append, in the order they were sent, of the last round watched. */
  readonly batchSizes: () => ReadonlyArray<number>
}

/** Deals the recorded batches to `runs` chains in turn: the same statements of the same sizes. */
export const dealBatches = (
  batchSizes: ReadonlyArray<number>,
  runs: number
): ReadonlyArray<ReadonlyArray<number>> => {
  const perRun = Array.from({ length: runs }, () => [] as number[])
  for (const [i, size] of batchSizes.entries()) perRun[i % runs]!.push(size)
  return perRun
}
