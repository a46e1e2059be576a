import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import { configPath, loadConfig } from "../config.ts";
import { DEFAULT_SERVICE_USER, DEFAULT_UNIT_DIR, installService, renderUnit, UNIT_NAME } from "../service.ts";
import { stringOption, UsageError, type Command } from "./command.ts";

// The CLI beside this module: agent/cli.ts in a checkout, dist/agent/cli.js in the installed package.
const CLI = fileURLToPath(new URL(`../cli${extname(import.meta.filename)}`, import.meta.url));

export const serviceCommand: Command = {
  name: "service",
  help: `Usage: tidemark service install [--config FILE] [--user NAME] [--unit-dir DIR] [--no-start] [--json]
       tidemark service print [--config FILE] [--user NAME]

Runs the agent as a systemd service (${UNIT_NAME}). \`install\` creates the
service user (a system user without login, default "${DEFAULT_SERVICE_USER}") unless it exists,
gives it the config's state folder, writes the unit (default folder
${DEFAULT_UNIT_DIR}) and enables and starts it. \`print\` shows the unit only.

The unit runs \`tidemark run --config FILE --json-logs\` with this Node and
this tidemark, restarts it when it exits non-zero, and confines it: it may
read every file and device (CAP_DAC_READ_SEARCH, no other capability) and
write only its state folder (ProtectSystem=strict, ProtectHome=read-only,
NoNewPrivileges, private /tmp, kernel and cgroup protections). Needs root.

Options:
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json); the unit names its absolute path
  --user NAME     the user the agent runs as (default ${DEFAULT_SERVICE_USER})
  --unit-dir DIR  where the unit goes (default ${DEFAULT_UNIT_DIR})
  --no-start      write the unit only: no systemctl enable --now
  --json          print {"unitFile", "steps"}

Examples:
  tidemark service print --config /etc/tidemark/tidemark.config.json
  sudo tidemark service install --config /etc/tidemark/tidemark.config.json
  journalctl -u tidemark -f`,
  options: {
    config: { type: "string" },
    user: { type: "string" },
    "unit-dir": { type: "string" },
    "no-start": { type: "boolean" },
    json: { type: "boolean" },
  },
  positionals: true,
  async run(values, positionals) {
    const [action, ...extra] = positionals;
    if ((action !== "install" && action !== "print") || extra.length > 0) throw new UsageError("tidemark service takes `install` or `print` (see `tidemark service --help`)");
    const config = loadConfig(configPath(stringOption(values.config)));
    const unit = { config, node: process.execPath, cli: CLI, user: stringOption(values.user) ?? DEFAULT_SERVICE_USER };
    if (action === "print") {
      process.stdout.write(renderUnit(unit));
      return 0;
    }
    const installed = installService({ ...unit, unitDir: stringOption(values["unit-dir"]) ?? DEFAULT_UNIT_DIR, start: values["no-start"] !== true });
    if (values.json === true) process.stdout.write(`${JSON.stringify(installed, null, 2)}\n`);
    else process.stdout.write(`${installed.steps.join("\n")}\n`);
    return 0;
  },
};
