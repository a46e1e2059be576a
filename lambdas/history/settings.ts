// The history's settings as the deployed applier (and the local cloud) read
// them from the environment: TIDEMARK_POINT_IN_TIME_DAYS, set from the stack
// setting tidemark:pointInTimeDays.

import { DEFAULT_POINT_IN_TIME_DAYS } from "../../contract/history.ts";
import { APPLIER_ENV } from "../environment.ts";
import type { HistorySettings } from "./recorder.ts";

export class HistorySettingsError extends Error {
  override name = "HistorySettingsError";
}

/** Days of point-in-time history from TIDEMARK_POINT_IN_TIME_DAYS (default 7; 0 turns it off); throws on anything but a whole number of days. */
export function historySettingsFromEnvironment(env: NodeJS.ProcessEnv): HistorySettings {
  const text = env[APPLIER_ENV.pointInTimeDays];
  if (text === undefined || text === "") return { days: DEFAULT_POINT_IN_TIME_DAYS };
  const days = Number(text);
  if (!Number.isInteger(days) || days < 0 || days > 3650) {
    throw new HistorySettingsError(`${APPLIER_ENV.pointInTimeDays} must be a whole number of days from 0 to 3650, got "${text}"`);
  }
  return { days };
}
