// `cdk synth` / `cdk deploy` entry (cdk.json: "node infra/app.ts"). Settings
// come from context: `-c tidemark:backup=true` or cdk.json's "context".

import { App, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { settingsFromContext } from "./settings.ts";
import { TidemarkStack } from "./stack.ts";

const app = new App();
const STACK_NAME_KEY = "tidemark:stackName";
const contextKeys = Object.keys(app.node.getAllContext() as Record<string, unknown>).filter((key) => key !== STACK_NAME_KEY);
const settings = settingsFromContext((key) => app.node.tryGetContext(key), contextKeys);
const stackName = String(app.node.tryGetContext(STACK_NAME_KEY) ?? "Tidemark");
new TidemarkStack(app, stackName, {
  settings,
  description: "tidemark: serverless target for write-ordered replication with task markers",
});
// Every synth runs the AwsSolutions rules; a finding that is not suppressed with a reason fails it.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
app.synth();
