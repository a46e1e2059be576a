// A root on a hard-mounted network file system whose server went away, for
// the commands that look at roots through the time-limited look: the real look,
// except that a look at the hung root never answers and its time limit passes
// at once (a deadline fired by the test, not a timer).

import type { RootDeadline } from "../../agent/root-watch.ts";
import { lookHere, type RootLook } from "../../agent/set-roots.ts";

/** The real look, except that a look at `hung` (or below it) never answers, and its time limit passes at once. */
export function hungAt(hung: string): { look: RootLook; asked: string[]; options: { deadline: RootDeadline } } {
  const asked: string[] = [];
  // answerWithin arms the deadline right after it asked the look: the look just asked tells whether it hangs.
  let lastHung = false;
  const wrap =
    <T,>(real: (path: string) => Promise<T>) =>
    (path: string): Promise<T> => {
      lastHung = path === hung || path.startsWith(`${hung}/`);
      if (!lastHung) return real(path);
      asked.push(path);
      return new Promise<T>(() => undefined);
    };
  const look: RootLook = { stat: wrap(lookHere.stat), realpath: wrap(lookHere.realpath), isEmpty: wrap(lookHere.isEmpty), exists: wrap(lookHere.exists) };
  const deadline: RootDeadline = (expired) => {
    if (lastHung) queueMicrotask(expired);
    return () => undefined;
  };
  return { look, asked, options: { deadline } };
}
