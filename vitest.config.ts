import { defineConfig } from "vitest/config"

// One vitest run covers every package; each package is a project so a
// failure names where it happened. Sources resolve through the
// "@baton/source" export condition, so tests never need a build first.
const shared = {
  setupFiles: ["reflect-metadata"],
  testTimeout: 30_000,
  hookTimeout: 60_000
}

export default defineConfig({
  resolve: { conditions: ["@baton/source"] },
  ssr: { resolve: { conditions: ["@baton/source"] } },
  test: {
    projects: [
      {
        extends: true,
        test: { ...shared, name: "core", include: ["packages/core/test/**/*.test.ts"] }
      },
      {
        extends: true,
        test: { ...shared, name: "adapter-memory", include: ["packages/adapters/memory/test/**/*.test.ts"] }
      },
      {
        extends: true,
        test: {
          ...shared,
          name: "adapter-conformance",
          include: ["packages/adapters/conformance/test/**/*.test.ts"]
        }
      }
    ]
  }
})
