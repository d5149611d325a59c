/** Small helpers: quantiles of latency samples, and sleep. */

/** The `q` quantile (0..1) of `samples`, nearest-rank; `null` when there are none. */
export const quantile = (samples, q) => {
  if (samples.length === 0) return null
  const sorted = Float64Array.from(samples).sort()
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
