// The names of the CDK stack's outputs: the stack writes them, and
// `tidemark init --cdk-outputs` reads them from `cdk deploy --outputs-file`.
// Renaming one breaks configs made from older outputs files.

export const STACK_OUTPUT = {
  queueUrl: "QueueUrl",
  bucket: "BucketName",
  region: "Region",
  agentPolicyArn: "AgentPolicyArn",
  deadLetterQueueUrl: "DeadLetterQueueUrl",
  eventBus: "EventBusName",
  dashboard: "DashboardName",
  tasksEnabled: "TasksEnabled",
  agentRoleArn: "AgentRoleArn",
  agentUserName: "AgentUserName",
  /** Followed by the host's name in PascalCase (web-1 -> HostRoleArnWeb1): one per host of `tidemark:hosts`. */
  hostRoleArnPrefix: "HostRoleArn",
} as const;

/** The output naming the role of a host of `tidemark:hosts`: web-1 -> HostRoleArnWeb1. */
export function hostRoleOutput(host: string): string {
  return `${STACK_OUTPUT.hostRoleArnPrefix}${host
    .split("-")
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join("")}`;
}
