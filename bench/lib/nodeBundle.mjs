/**
 * The Node server variants are TypeScript (`bench/servers/node-<variant>.ts`):
 * esbuild bundles each once per run, everything included (ESM, Node 20), into
 * a temp directory that the orchestrator removes on exit, and Node runs the
 * bundle with no loader at run time. `src/` is read at that moment: a run tests
 * the `src/` it bundled.
 */
import { mkdtempSync, rmSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))
let dir
const built = new Map()

/** The path of the bundle of `bench/servers/node-<variant>.ts`, built on the first call. */
export const nodeBundle = async (variant) => {
  if (!built.has(variant)) built.set(variant, build(variant))
  return built.get(variant)
}

const build = async (variant) => {
  const { build } = await import("esbuild")
  dir ??= mkdtempSync(path.join(os.tmpdir(), "saacms-bench-node-"))
  const outfile = path.join(dir, `${variant}.mjs`)
  await build({
    entryPoints: [path.join(root, "bench/servers", `node-${variant}.ts`)],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "silent",
    // Some dependencies are CommonJS that calls require(): give the ESM bundle one.
    banner: { js: "import { createRequire as __benchCreateRequire } from 'node:module'; const require = __benchCreateRequire(import.meta.url);" }
  })
  return outfile
}

/** Remove the bundles (on the orchestrator's exit). */
export const removeBundles = () => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
}
