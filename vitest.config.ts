import { defineConfig } from "vitest/config"

const runtime = typeof (globalThis as { Bun?: unknown }).Bun === "undefined" ? "node" : "bun"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // In CI, also write a JSON report per runtime; .ci/run prints the totals from them.
    ...(process.env.CI
      ? { reporters: ["default", "json"], outputFile: { json: `.ci/results/${runtime}.json` } }
      : {})
  }
})
