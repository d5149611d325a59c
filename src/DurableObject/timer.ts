/**
 * A repeating timer for one Worker request: the Worker side of a hibernatable
 * subscription keeps its client's stream alive with it. workerd does not let
 * one request touch another's I/O (its stream, its socket), so each client's
 * heartbeat must run in the request that holds that client. An Effect
 * `Schedule` would run on the scheduler every request shares, and could run
 * one client's beat from another request's turn. This is the second place in
 * `src/` outside `src/bin/` that calls a timer function (`.ci/run` names it);
 * time itself is still read through `Clock`.
 *
 * @internal
 */
export const everyInterval = (ms: number, f: () => void): (() => void) => {
  const timer = globalThis.setInterval(f, ms)
  return () => globalThis.clearInterval(timer)
}
