/**
 * The end of the current turn of the event loop: after the promise jobs of
 * the code that is running (a host awaiting several publishes in a row), and
 * before the next I/O. The hub hands out what was published in a turn then.
 *
 * This is not time: nothing here waits for a duration, reads a clock or
 * behaves differently under `TestClock`; it only orders work after the
 * current turn. It is one of the two places in `src/` outside `src/bin/` that
 * call a timer function (`.ci/run` names them), because workerd has no
 * `setImmediate` and a zero timer is its next turn.
 *
 * @internal
 */
export const afterTurn: (f: () => void) => void = typeof globalThis.setImmediate === "function"
  ? (f) => globalThis.setImmediate(f)
  : (f) => globalThis.setTimeout(f, 0)
