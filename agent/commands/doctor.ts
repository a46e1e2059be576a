import { runDoctor, type Check } from "../doctor.ts";
import { configPath } from "../config.ts";
import { table } from "../format.ts";
import { stringOption, type Command } from "./command.ts";

const LABEL: Record<Check["level"], string> = { ok: "ok", warn: "WARN", fail: "FAIL" };

export const doctorCommand: Command = {
  name: "doctor",
  help: `Usage: tidemark doctor [--json] [--config FILE]

Checks, one line each, what this host needs to replicate: the Node version,
the config and the sets' sources, the proxy each AWS endpoint goes through
(config proxy, else HTTPS_PROXY / HTTP_PROXY, less NO_PROXY) and the CA
bundle, AWS credentials, the queue (and that it is
FIFO), permission to send to it (nothing is queued: the check's message has
no group id, which a FIFO queue refuses after checking the permission), the
bucket, writing each set's staging/ prefix (a small object the bucket's
lifecycle expires) and reading its state/, the inotify watch limit against
the sets' folders, the inotify event queue (fs.inotify.max_queued_events)
against the sets' entries, and this host's clock against the endpoint's.
A state folder an agent ran on that holds no space ballast (its room to mark
messages sent on a disk filled to its last byte) is a warning, saying why.
So is a state folder that is a copy of another place (its owner.key was made
for another machine or folder: the next start gives this host a new key), and
a key made because the state folder was found copied while the target's owner
record of a set still names another key (the set's sends are held until
\`tidemark adopt SET\`); once this host owns its sets, that line is "ok".

Exit code 0 when nothing failed (warnings allowed), 1 otherwise.

Options:
  --json          print {"ok": bool, "checks": [{"name", "level", "detail"}]}
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)

Examples:
  tidemark doctor
  tidemark doctor --json | jq '.checks[] | select(.level != "ok")'`,
  options: { json: { type: "boolean" }, config: { type: "string" } },
  async run(values) {
    const checks = await runDoctor(configPath(stringOption(values.config)));
    const ok = checks.every((check) => check.level !== "fail");
    if (values.json === true) process.stdout.write(`${JSON.stringify({ ok, checks }, null, 2)}\n`);
    else process.stdout.write(`${table(["", "CHECK", "DETAIL"], checks.map((c) => [LABEL[c.level], c.name, c.detail]))}\n`);
    return ok ? 0 : 1;
  },
};
