/**
 * Run a Worker in the real Workers runtime: bundle it with esbuild and start
 * workerd through Miniflare, scoped (the scope disposes it). Durable Object
 * storage persists in `persist`, so a test can restart the runtime on it.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as esbuild from "esbuild"
import { Miniflare } from "miniflare"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** A started runtime: its base URL (real sockets) and Miniflare itself. */
export interface Workerd {
  readonly url: URL
  readonly miniflare: Miniflare
}

const bundles = new Map<string, Promise<string>>()

/**
 * The Worker at `entry`, bundled as one ES module (once per test file);
 * `alias` maps package names to files (the example imports the library by name).
 */
export const bundle = (entry: string, alias: Record<string, string> = {}): Promise<string> => {
  const cacheKey = JSON.stringify([entry, alias])
  let code = bundles.get(cacheKey)
  if (code === undefined) {
    code = esbuild.build({
      entryPoints: [entry],
      bundle: true,
      write: false,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      mainFields: ["module", "main"],
      conditions: ["workerd", "worker", "import"],
      alias
    }).then((result) => result.outputFiles[0]!.text)
    bundles.set(cacheKey, code)
  }
  return code
}

/** A fresh directory for Durable Object storage. */
export const tempDir = (): string => mkdtempSync(join(tmpdir(), "saacms-realtime-do-"))

export interface Options {
  readonly entry: string
  /** The Worker's `[vars]` (the object reads `REALTIME_*` from them). */
  readonly vars?: Record<string, string>
  /** Durable Object storage directory; a fresh one when omitted. */
  readonly persist?: string
  /** Package names resolved to files when bundling (see `bundle`). */
  readonly alias?: Record<string, string>
}

/** Start workerd with the Worker at `entry` and its `SAACMS_REALTIME` binding. */
export const start = (options: Options): Effect.Effect<Workerd, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const miniflare = new Miniflare({
        modules: [{ type: "ESModule", path: "worker.mjs", contents: await bundle(options.entry, options.alias) }],
        compatibilityDate: "2025-06-01",
        bindings: options.vars ?? {},
        durableObjects: { SAACMS_REALTIME: { className: "SaacmsRealtimeDO", useSQLite: true } },
        durableObjectsPersist: options.persist ?? tempDir()
      })
      return { url: await miniflare.ready, miniflare }
    }),
    ({ miniflare }) => Effect.promise(() => miniflare.dispose())
  )
