/**
 * Counters shared by every subscriber of a run: frames delivered, HTTP chunks
 * they came in (how many frames the server wrote together), latency
 * samples while a latency phase records them, and a wait for a delivery target
 * that gives up when deliveries stall.
 */
export class Ledger {
  constructor() {
    this.count = 0
    this.chunks = 0
    /** Socket reads (\`data\` events) of every subscriber: frames per read shows what the server wrote together. */
    this.reads = 0
    /** Frames delivered per key, once \`countPerKey\` was called. */
    this.perKey = undefined
    this.keyWait = undefined
    this.recordingLatency = false
    this.latencies = new Float64Array(1024)
    this.latencyCount = 0
    this.target = Infinity
    this.reached = undefined
  }

  /** From now on, also count the frames delivered to each of `keys` keys (for `untilKey`). */
  countPerKey(keys) {
    this.perKey = new Int32Array(keys)
  }

  /** One frame arrived for `key`; `latency` (ms) counts only while recording. */
  delivered(latency, key) {
    if (this.perKey !== undefined) {
      const count = ++this.perKey[key]
      const wait = this.keyWait
      if (wait !== undefined && wait.key === key && count >= wait.target) wait.reached()
    }
    if (this.recordingLatency) {
      if (this.latencyCount === this.latencies.length) {
        const grown = new Float64Array(this.latencies.length * 2)
        grown.set(this.latencies)
        this.latencies = grown
      }
      this.latencies[this.latencyCount++] = latency
    }
    if (++this.count === this.target) this.reached()
  }

  /** The latency samples recorded so far. */
  samples() {
    return this.latencies.subarray(0, this.latencyCount)
  }

  /**
   * Resolve when `target` frames have been delivered in total (with the time it
   * happened), or when no frame arrived for `stallMs` (`reached: false`).
   */
  until(target, stallMs) {
    return this.#waitOrStall(stallMs, (reached) => {
      if (this.count >= target) return reached()
      this.target = target
      this.reached = reached
    }, () => {
      this.target = Infinity
      this.reached = undefined
    })
  }

  /**
   * Resolve when `target` frames have been delivered to `key` in total (needs
   * `countPerKey`), or when no frame arrived anywhere for `stallMs`
   * (`reached: false`). One wait at a time.
   */
  untilKey(key, target, stallMs) {
    if (this.perKey[key] >= target) return Promise.resolve({ reached: true, at: performance.now() })
    return this.#waitOrStall(stallMs, (reached) => {
      this.keyWait = { key, target, reached }
    }, () => {
      this.keyWait = undefined
    })
  }

  // `arm` is handed the function that ends the wait as reached; a watchdog ends
  // it as not reached once no frame has arrived for `stallMs`; `disarm` clears
  // what `arm` set, either way.
  #waitOrStall(stallMs, arm, disarm) {
    return new Promise((resolve) => {
      let last = this.count
      let lastProgress = performance.now()
      const finish = (reached) => {
        clearInterval(watchdog)
        disarm()
        resolve({ reached, at: performance.now() })
      }
      const watchdog = setInterval(() => {
        if (this.count !== last) {
          last = this.count
          lastProgress = performance.now()
        } else if (performance.now() - lastProgress > stallMs) {
          finish(false)
        }
      }, Math.min(250, stallMs))
      arm(() => finish(true))
    })
  }
}
