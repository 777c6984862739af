// Completions through the TypeScript MCP SDK the Inspector is built on (the Inspector CLI has no
// one-shot completion method). Usage: node complete_check.mjs <webhook-mcp> <database-url>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [server, databaseUrl] = process.argv.slice(2);
const transport = new StdioClientTransport({
  command: server,
  args: ["serve"],
  env: { ...process.env, WEBHOOK_MCP_DATABASE_URL: databaseUrl, WEBHOOK_MCP_LOG_LEVEL: "WARNING" },
});
const client = new Client({ name: "complete-check", version: "1.0.0" });
await client.connect(transport);
const checks = [
  [{ type: "ref/prompt", name: "debug_webhook" }, { name: "id", value: "" }, "1"],
  [{ type: "ref/resource", uri: "webhooks://webhooks/{id}" }, { name: "id", value: "" }, "1"],
  [{ type: "ref/resource", uri: "webhooks://event-types/{name}" }, { name: "name", value: "order.c" }, "order.created"],
  [{ type: "ref/prompt", name: "manage_events" }, { name: "events", value: "order.created, pay" }, "order.created, payment.completed"],
];
let failed = false;
for (const [ref, argument, expected] of checks) {
  const { completion } = await client.complete({ ref, argument });
  const ok = completion.values.includes(expected);
  failed ||= !ok;
  console.log(`${ok ? "ok" : "FAILED"}: complete ${JSON.stringify(ref)} ${argument.name}=${JSON.stringify(argument.value)} -> ${JSON.stringify(completion.values)}`);
}
await client.close();
process.exit(failed ? 1 : 0);
