import type { Reporter, TestModule } from "vitest/node"

/**
 * Prints "N passed, N failed, N skipped" alone on the last line of a run: the
 * plain summary CI reads, next to vitest's own report.
 */
export default class SummaryLineReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const module of testModules)
      for (const test of module.children.allTests()) {
        const state = test.result().state
        if (state === "passed") passed++
        else if (state === "failed") failed++
        else skipped++
      }
    // A module that failed to load has no tests but still fails the run.
    failed += testModules.filter(
      (m) => m.state() === "failed" && [...m.children.allTests()].length === 0
    ).length
    // After the default reporter has printed its own summary.
    setImmediate(() => console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`))
  }
}
