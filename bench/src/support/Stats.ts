/** Order statistics over samples: medians of rounds, percentiles of latencies. */

/** The value below which `p` percent of the samples fall (nearest rank); NaN for no samples. */
export const percentile = (samples: ReadonlyArray<number>, p: number): number => {
  if (samples.length === 0) return Number.NaN
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!
}

export const median = (samples: ReadonlyArray<number>): number => percentile(samples, 50)

/** Spread of rounds as (max - min) / median: how much the figure moved between rounds. */
export const spread = (samples: ReadonlyArray<number>): number => {
  if (samples.length < 2) return 0
  const m = median(samples)
  return m === 0 ? 0 : (Math.max(...samples) - Math.min(...samples)) / m
}

/** Milliseconds since an arbitrary origin, sub-millisecond, comparable across processes on one machine. */
export const wallClockMs = (): number => performance.timeOrigin + performance.now()
