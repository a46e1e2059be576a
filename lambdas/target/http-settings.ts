// The one HTTP configuration every AWS SDK client is built with
// (aws-clients.ts): a proxy (Node's own proxy support in http.Agent: CONNECT
// tunnels for https endpoints, absolute-URL forwarding for http ones, NO_PROXY
// honoured), extra certificate authorities, timeouts and sockets sized to the
// caller's concurrency. Each setting falls back to the usual environment
// variable, so an agent behind a corporate proxy or TLS inspection, and the
// applier in a VPC, are configured the way other AWS tools are.

import { readFileSync } from "node:fs";
import type { Agent as HttpAgent, AgentOptions } from "node:http";
import https from "node:https";
import { isIPv4 } from "node:net";
import { rootCertificates } from "node:tls";
import { X509Certificate } from "node:crypto";
import type { NodeHttpHandlerOptions } from "@smithy/types";
import { guardSlowTransfers, type MinimumTransfer } from "./slow-transfers.ts";

// Not `import ... from "node:http"`: its ESM facade reads every export, and the lazy WebSocket/EventSource ones load
// Node's fetch (undici), ~35 ms of CPU on every start of the agent and the CLI's commands (bench/notes.md).
const http = process.getBuiltinModule("node:http");

export interface HttpSettings {
  /**
   * Proxy URL for every endpoint, http and https alike (config `proxy`); else HTTPS_PROXY / HTTP_PROXY by the
   * endpoint's scheme. NO_PROXY applies either way. `false`: never a proxy (the local cloud's clients of its own emulator).
   */
  readonly proxy?: string | false;
  /** PEM file of certificate authorities trusted besides Node's own (config `caBundle`); else AWS_CA_BUNDLE. */
  readonly caBundle?: string;
  /** Requests the caller keeps in flight at once: the sockets kept open per host. */
  readonly maxSockets?: number;
  /** A connection not established in this long fails (and is retried like any network error). */
  readonly connectTimeoutMs?: number;
  /** A request that sends and receives nothing for this long is abandoned. */
  readonly idleTimeoutMs?: number;
  /** A connection that moves less than this while a request is on it is abandoned (slow-transfers.ts); none when absent. */
  readonly minimumTransfer?: MinimumTransfer;
}

/** The SDK's own default: enough for the applier's concurrent writes and the agent's staging. */
export const DEFAULT_MAX_SOCKETS = 50;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** The CLI's reads of the bucket give up on a request that moves nothing for this long (a minute is for the applier's writes). */
export const READ_IDLE_TIMEOUT_MS = 15_000;
/**
 * What a connection must move while one of the CLI's reads is on it: an endpoint answering a byte every few seconds
 * never trips an idle timeout, and would hold a restore for hours. Any working link moves more.
 */
export const READ_MINIMUM_TRANSFER = { bytes: 1024, windowMs: 30_000 } as const;
/** http.Agent takes `proxyEnv` since Node 24.5.0; older versions would silently go direct. */
const PROXY_NODE_VERSION = [24, 5] as const;

export class ProxySettingError extends Error {
  override name = "ProxySettingError";
}

export class CaBundleError extends Error {
  override name = "CaBundleError";
}

/** The proxies in effect, each with where it was set. */
export interface ProxyPlan {
  readonly http?: string;
  readonly https?: string;
  readonly noProxy?: string;
  /** "config proxy", or the variables the values came from. */
  readonly source: string;
}

const firstSet = (env: NodeJS.ProcessEnv, names: readonly string[]): { name: string; value: string } | undefined => {
  for (const name of names) {
    const value = env[name];
    if (value) return { name, value };
  }
  return undefined;
};

function checkProxyUrl(url: string, where: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ProxySettingError(`${where} is not a URL: "${redactProxy(url)}" (write it as http://host:port)`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new ProxySettingError(`${where} must be an http:// or https:// URL, not ${parsed.protocol} (a SOCKS proxy is not supported)`);
  }
}

/** The proxy of `settings`, else of the environment (lower-case names first, as curl and Node read them); undefined for none. */
export function proxyPlan(settings: HttpSettings, env: NodeJS.ProcessEnv = process.env, nodeVersion: string = process.versions.node): ProxyPlan | undefined {
  const noProxy = firstSet(env, ["no_proxy", "NO_PROXY"])?.value;
  if (settings.proxy === false) return undefined;
  let plan: ProxyPlan | undefined;
  if (settings.proxy !== undefined) {
    checkProxyUrl(settings.proxy, "the config's proxy");
    plan = { http: settings.proxy, https: settings.proxy, source: "config proxy" };
  } else {
    const https = firstSet(env, ["https_proxy", "HTTPS_PROXY"]);
    const http = firstSet(env, ["http_proxy", "HTTP_PROXY"]);
    if (https) checkProxyUrl(https.value, https.name);
    if (http) checkProxyUrl(http.value, http.name);
    if (https || http) {
      plan = { ...(http ? { http: http.value } : {}), ...(https ? { https: https.value } : {}), source: [https?.name, http?.name].filter((name) => name !== undefined).join(", ") };
    }
  }
  if (!plan) return undefined;
  const [major = 0, minor = 0] = nodeVersion.split(".").map(Number);
  if (major < PROXY_NODE_VERSION[0] || (major === PROXY_NODE_VERSION[0] && minor < PROXY_NODE_VERSION[1])) {
    throw new ProxySettingError(`a proxy is set (${plan.source}) but Node v${nodeVersion} cannot use one: tidemark needs Node ${PROXY_NODE_VERSION.join(".")} or later for a proxy`);
  }
  return noProxy ? { ...plan, noProxy } : plan;
}

/** A proxy URL without its password, for messages and `tidemark doctor`. */
export function redactProxy(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.username && !parsed.password) return url;
    parsed.password = parsed.password ? "***" : "";
    return parsed.href;
  } catch {
    return url.replace(/\/\/[^@/]*@/, "//***@");
  }
}

function ipToNumber(ip: string): number {
  return ip.split(".").reduce((sum, part) => sum * 256 + Number(part), 0);
}

/** Whether NO_PROXY exempts a host, by Node's rules: `*`, the host or host:port, a `.domain` or `*.domain` suffix, an IPv4 range `a-b`. */
export function bypassesProxy(url: URL, noProxy: string | undefined): boolean {
  if (!noProxy) return false;
  const host = url.hostname.toLowerCase();
  const hostWithPort = url.port ? `${host}:${url.port}` : host;
  return noProxy
    .split(",")
    .map((entry) => entry.trim().toLowerCase())
    .some((entry) => {
      if (entry === "*" || entry === host || entry === hostWithPort) return true;
      if (entry.startsWith(".") && (host === entry.slice(1) || host.endsWith(entry))) return true;
      if (entry.startsWith("*.") && host.endsWith(entry.slice(1))) return true;
      const [start = "", end = ""] = entry.split("-").map((part) => part.trim());
      return isIPv4(host) && isIPv4(start) && isIPv4(end) && ipToNumber(host) >= ipToNumber(start) && ipToNumber(host) <= ipToNumber(end);
    });
}

/** The proxy a request to `url` goes through, or undefined when it goes direct. */
export function proxyFor(url: URL, plan: ProxyPlan | undefined): string | undefined {
  if (!plan || bypassesProxy(url, plan.noProxy)) return undefined;
  return url.protocol === "https:" ? plan.https : plan.http;
}

/** True when a proxy or CA bundle is in effect: a request outside the SDK's handler (the applier's direct S3 path) would go around it. */
export function customisedHttp(settings: HttpSettings, env: NodeJS.ProcessEnv = process.env): boolean {
  return proxyPlan(settings, env) !== undefined || caBundleFile(settings, env) !== undefined;
}

/** The CA bundle file of `settings`, else AWS_CA_BUNDLE, with where it was named. */
export function caBundleFile(settings: HttpSettings, env: NodeJS.ProcessEnv = process.env): { file: string; source: string } | undefined {
  if (settings.caBundle !== undefined) return { file: settings.caBundle, source: "config caBundle" };
  return env.AWS_CA_BUNDLE ? { file: env.AWS_CA_BUNDLE, source: "AWS_CA_BUNDLE" } : undefined;
}

/**
 * The last bundle whose certificates were all valid, by its text: every client a process makes (`tidemark run`: the
 * start check's two, the agent's two) reads the same file, and a system bundle's ~150 certificates cost 10-15 ms of
 * CPU to parse each time, before the first request. A file whose text changed is checked again.
 */
let checkedBundle: { readonly text: string; readonly pems: readonly string[] } | undefined;

/** The certificates of a PEM file; a file that cannot be read or holds no valid certificate is an error naming it. */
export function readCaBundle(file: string, source = "CA bundle"): string[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new CaBundleError(`cannot read the CA bundle ${file} (${source}): ${(error as Error).message}`);
  }
  if (checkedBundle?.text === text) return [...checkedBundle.pems];
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (pems.length === 0) throw new CaBundleError(`the CA bundle ${file} (${source}) holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  pems.forEach((pem, i) => {
    try {
      new X509Certificate(pem);
    } catch (error) {
      throw new CaBundleError(`certificate ${i + 1} of the CA bundle ${file} (${source}) is not valid: ${(error as Error).message}`);
    }
  });
  checkedBundle = { text, pems: [...pems] };
  return pems;
}

/** Options of the http and https agents: keep-alive sockets, the proxy, and the CA bundle added to Node's roots. */
function agentOptions(settings: HttpSettings, env: NodeJS.ProcessEnv): { http: AgentOptions; https: https.AgentOptions } {
  const plan = proxyPlan(settings, env);
  const bundle = caBundleFile(settings, env);
  const common: AgentOptions = {
    keepAlive: true,
    maxSockets: settings.maxSockets ?? DEFAULT_MAX_SOCKETS,
    // Explicitly none when no proxy is set: NODE_USE_ENV_PROXY must not route around what doctor shows.
    proxyEnv: plan ? { HTTP_PROXY: plan.http, HTTPS_PROXY: plan.https, NO_PROXY: plan.noProxy } : {},
  };
  // Added to Node's roots, not instead of them: endpoints outside a TLS-inspecting proxy still verify.
  return { http: common, https: bundle ? { ...common, ca: [...rootCertificates, ...readCaBundle(bundle.file, bundle.source)] } : common };
}

/** The SDK client's `requestHandler`: options for the NodeHttpHandler it builds, which owns (and closes) the agents. */
export function requestHandlerOptions(settings: HttpSettings, env: NodeJS.ProcessEnv = process.env): NodeHttpHandlerOptions {
  const agents = agentOptions(settings, env);
  const rule = settings.minimumTransfer;
  return {
    connectionTimeout: settings.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    socketTimeout: settings.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    httpAgent: rule ? guardSlowTransfers(new http.Agent(agents.http), rule) : agents.http,
    httpsAgent: rule ? guardSlowTransfers(new https.Agent(agents.https), rule) : agents.https,
  };
}

/** An agent with the same proxy, CA bundle and sockets, for the rare request outside the SDK (doctor's clock read). */
export function agentFor(url: URL, settings: HttpSettings, env: NodeJS.ProcessEnv = process.env): HttpAgent {
  const agents = agentOptions(settings, env);
  return url.protocol === "https:" ? new https.Agent(agents.https) : new http.Agent(agents.http);
}
