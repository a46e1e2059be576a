import type { TestSpecification } from "vitest/node";
import { BaseSequencer } from "vitest/node";
import { defineConfig } from "vitest/config";

/**
 * Vitest's order (slowest first by the last run's times, else largest file first), except that on a
 * fresh clone with no times yet (CI after `npm ci`) the end-to-end files go first: they are the
 * longest, and one of them started last would leave the other worker idle while it runs.
 */
class EndToEndFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    if (sorted.every((spec) => this.ctx.cache.getTestSpecificationResult(spec))) return sorted;
    const endToEnd = (spec: TestSpecification) => spec.moduleId.includes("/test/e2e/");
    return [...sorted.filter(endToEnd), ...sorted.filter((spec) => !endToEnd(spec))];
  }
}

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    // One test file per core. Vitest's default is one fewer than the cores: a single worker on a 2-core CI
    // machine, and the second core mostly idle while its test waits on an emulator, a child process or a poll.
    maxWorkers: "100%",
    // Two files at once share the cores with the CLI processes they start: an end-to-end test that takes
    // 30 s alone takes longer beside another. The limit is for a hang, not a measure of speed.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    sequence: { sequencer: EndToEndFirst },
  },
});
