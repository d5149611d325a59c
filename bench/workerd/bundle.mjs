/**
 * Bundle `worker.ts` (both Durable Object classes and the routing Worker) into
 * one ES module for workerd, with esbuild's JS API. While `src/index.ts` does
 * not export `SaacmsRealtimeDO` yet (or when `ours` is not wanted), its import
 * is replaced by a stub class that answers 503.
 */
import { build, stop } from "esbuild"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))
const index = path.join(root, "src/index.ts")

const stub = `export class SaacmsRealtimeDO {
  fetch() { return new Response("SaacmsRealtimeDO is not exported from src/index.ts", { status: 503 }) }
}\n`

/** `true` once `src/index.ts` names `SaacmsRealtimeDO`. */
export const oursExported = () => /\bSaacmsRealtimeDO\b/.test(readFileSync(index, "utf8"))

/**
 * Build into a fresh temp directory. Resolves with `{ dir, scriptPath, bytes, ours }`:
 * `ours` is `false` when the stub stood in for the package.
 */
export const bundle = async ({ wantOurs = true } = {}) => {
  const ours = wantOurs && oursExported()
  const dir = mkdtempSync(path.join(os.tmpdir(), "saacms-workerd-bench-"))
  const scriptPath = path.join(dir, "worker.mjs")
  const result = await build({
    entryPoints: [fileURLToPath(new URL("worker.ts", import.meta.url))],
    outfile: scriptPath,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    // `effect` and `@effect/*` publish ESM under `module` / the `import` condition.
    mainFields: ["module", "main"],
    conditions: ["workerd", "worker", "import"],
    external: ["cloudflare:*"],
    metafile: true,
    logLevel: "silent",
    plugins: ours ? [] : [{
      name: "ours-stub",
      setup(b) {
        b.onResolve({ filter: /\/src\/index\.js$/ }, () => ({ path: "ours-stub", namespace: "ours-stub" }))
        b.onLoad({ filter: /.*/, namespace: "ours-stub" }, () => ({ contents: stub, loader: "js" }))
      }
    }]
  }).catch((error) => {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }).finally(stop) // esbuild's service process is not needed any more
  const bytes = Object.values(result.metafile.outputs).reduce((sum, output) => sum + output.bytes, 0)
  return { dir, scriptPath, bytes, ours }
}
