// Drills on a schedule (`drills` in the agent config): the running agent
// looks every minute for a set whose last drill is older than its interval,
// and runs it. The last drill's time comes from the target, so a restarted
// agent does not drill again at once.

import type { DrillReport } from "../contract/drills.ts";
import { silentLogger, type Logger } from "./log.ts";

export interface DrillPlan {
  readonly set: string;
  /** How often the set is drilled. */
  readonly everyMs: number;
  /** Application check run inside the restored tree. */
  readonly check?: string;
}

export interface DrillSchedulerOptions {
  readonly plans: readonly DrillPlan[];
  /** Runs one drill and sends its report to the target; the signal aborts it when the schedule stops. */
  readonly run: (plan: DrillPlan, signal: AbortSignal) => Promise<DrillReport>;
  /** When the set's last drill started, as the target knows it (undefined: never). */
  readonly lastDrill: (set: string) => Promise<Date | undefined>;
  readonly now?: () => Date;
  readonly log?: Logger;
}

/** How often the schedule is looked at. */
const POLL_MS = 60_000;

export class DrillScheduler {
  readonly #options: DrillSchedulerOptions;
  readonly #log: Logger;
  /** When this process last started each set's drill (the target learns of it only once the report arrives). */
  readonly #started = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> = Promise.resolve();
  #stopped = false;
  readonly #abort = new AbortController();

  constructor(options: DrillSchedulerOptions) {
    this.#options = options;
    this.#log = options.log ?? silentLogger;
  }

  /** Runs the drills that are due now, one after another; returns their reports. */
  async runDue(): Promise<DrillReport[]> {
    const reports: DrillReport[] = [];
    for (const plan of this.#options.plans) {
      if (this.#stopped) break;
      const now = (this.#options.now ?? (() => new Date()))().getTime();
      let last = this.#started.get(plan.set);
      if (last === undefined) {
        try {
          last = (await this.#options.lastDrill(plan.set))?.getTime();
        } catch (error) {
          this.#log.warn("drill schedule: the last drill is not readable from the target; trying again later", { set: plan.set, error: String(error) });
          continue;
        }
      }
      if (last !== undefined && now - last < plan.everyMs) continue;
      this.#started.set(plan.set, now);
      try {
        const report = await this.#options.run(plan, this.#abort.signal);
        const fields = { set: plan.set, drill: report.id, problems: report.problemCount, rtoMs: report.rto.totalMs };
        if (report.passed) this.#log.info("drill passed", fields);
        else this.#log.error("drill FAILED; see its report", fields);
        reports.push(report);
      } catch (error) {
        this.#log.error("drill could not run", { set: plan.set, error: String(error) });
      }
    }
    return reports;
  }

  /** Looks at the schedule now and then every minute, until stopped. */
  start(): void {
    const tick = () => {
      this.#running = this.runDue().finally(() => {
        if (!this.#stopped) {
          this.#timer = setTimeout(tick, POLL_MS);
          this.#timer.unref();
        }
      });
    };
    tick();
  }

  /** Stops the schedule; a drill running is aborted (its scratch folder removed). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#abort.abort(new Error("the agent is stopping"));
    await this.#running.catch(() => undefined);
  }
}
