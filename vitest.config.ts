import { defineConfig, type TestProjectInlineConfiguration } from "vitest/config"

// One vitest run covers every package; each package is a project so a
// failure names where it happened. Sources resolve through the
// "@baton/source" export condition, so tests never need a build first.
const shared = {
  setupFiles: ["reflect-metadata"],
  testTimeout: 30_000,
  hookTimeout: 60_000
}

const project = (name: string, include: string): TestProjectInlineConfiguration => ({
  extends: true,
  test: { ...shared, name, include: [include] }
})

export default defineConfig({
  resolve: { conditions: ["@baton/source"] },
  ssr: { resolve: { conditions: ["@baton/source"] } },
  test: {
    reporters: ["default", "./tests/support/SummaryLineReporter.ts"],
    projects: [
      project("core", "packages/core/test/**/*.test.ts"),
      project("adapter-memory", "packages/adapters/memory/test/**/*.test.ts"),
      project("adapter-postgres", "packages/adapters/postgres/test/**/*.test.ts"),
      project("adapter-redis", "packages/adapters/redis/test/**/*.test.ts"),
      project("adapter-mongo", "packages/adapters/mongo/test/**/*.test.ts"),
      project("adapter-conformance", "packages/adapters/conformance/test/**/*.test.ts"),
      project("examples", "examples/**/*.test.ts"),
      project("transport-in-process", "packages/transports/in-process/test/**/*.test.ts"),
      project("transport-http", "packages/transports/http/test/**/*.test.ts"),
      project("server", "packages/server/test/**/*.test.ts"),
      project("http", "tests/http/**/*.test.ts"),
      project("cluster", "tests/cluster/**/*.test.ts"),
      project("security", "tests/security/**/*.test.ts"),
      project("bench-smoke", "bench/test/**/*.test.ts")
    ]
  }
})
