// Replicate's official MCP server (`replicate-mcp` from npm), started over stdio by the MCP SDK's client with only
// REPLICATE_BASE_URL pointed at the gateway: it lists the catalog's models, then runs a prediction to its end.
// Usage: node mcp.mjs <base url incl. /v1> <key> <version> <input JSON>; prints one JSON object.
import { createRequire } from "node:module";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [base, token, version, input] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const transport = new StdioClientTransport({
  command: process.execPath,
  args: [require.resolve("replicate-mcp")],
  env: { PATH: process.env.PATH, REPLICATE_API_TOKEN: token, REPLICATE_BASE_URL: base },
  stderr: "ignore",
});
const client = new Client({ name: "gateway-tests", version: "1.0.0" });
await client.connect(transport);

async function call(name, args) {
  const result = await client.callTool({ name, arguments: args });
  if (result.isError) throw new Error(`${name}: ${JSON.stringify(result.content)}`);
  const answer = JSON.parse(result.content[0].text);
  return answer.body ?? answer; // a list comes wrapped with the request it answered, an object as it is
}

const tools = (await client.listTools()).tools.map((tool) => tool.name);
const models = (await call("list_models", {})).results.map((model) => `${model.owner}/${model.name}`);
let prediction = await call("create_predictions", { version, input: JSON.parse(input) });
const deadline = Date.now() + 60_000;
while (!["succeeded", "failed", "canceled"].includes(prediction.status) && Date.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 250));
  prediction = await call("get_predictions", { prediction_id: prediction.id });
}
console.log(JSON.stringify({ tools, models, prediction }));
await client.close();
