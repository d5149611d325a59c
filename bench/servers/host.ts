/**
 * What every bench server shares: the port it listens on (first argument, else
 * `PORT`), the `READY <port>` line the orchestrator waits for, and the
 * `POST /bench/gc` handler.
 */

/** The port to listen on. */
export const port: number = Number(process.argv[2] ?? process.env.PORT ?? 0)

/** Tell the orchestrator that the server accepts connections. */
export const ready = (listening: number): void => {
  process.stdout.write(`READY ${listening}\n`)
}

/** A full garbage collection, so that the next RSS reading holds live memory only. */
export const gc = (): Response => {
  Bun.gc(true)
  return new Response(null, { status: 204 })
}
